#include "tools/reproduce/datasets.hpp"

#include <zlib.h>

#include <algorithm>
#include <array>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>

namespace rmsnorm::reproduce {
namespace {

namespace fs = std::filesystem;

// The whole file, gunzipped when it is gzip (zlib's gzread reads plain files as they are).
std::string read_file(const std::string& path) {
  gzFile f = gzopen(path.c_str(), "rb");
  if (!f) throw std::runtime_error("cannot open " + path);
  std::string out;
  std::array<char, 1 << 16> buffer;
  int got = 0;
  while ((got = gzread(f, buffer.data(), static_cast<unsigned>(buffer.size()))) > 0) out.append(buffer.data(), got);
  const bool failed = got < 0;
  gzclose(f);
  if (failed) throw std::runtime_error("cannot read " + path + " (corrupt gzip?)");
  return out;
}

uint32_t big_endian(const std::string& bytes, size_t offset) {
  uint32_t v = 0;
  for (size_t i = 0; i < 4; ++i) v = (v << 8) | static_cast<uint8_t>(bytes[offset + i]);
  return v;
}

}  // namespace

CharCorpus load_fortunes(const std::string& directory) {
  std::vector<fs::path> files;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(directory, ec)) {
    if (!entry.is_regular_file() || entry.is_symlink()) continue;
    const auto ext = entry.path().extension().string();
    if (ext == ".dat" || ext == ".u8") continue;
    files.push_back(entry.path());
  }
  if (ec) throw std::runtime_error("fortunes: cannot list " + directory + ": " + ec.message() +
                                   " (install the Debian package `fortunes`)");
  std::sort(files.begin(), files.end());
  CharCorpus corpus;
  std::string text;
  for (const auto& path : files) {
    std::istringstream in(read_file(path.string()));
    std::string line;
    while (std::getline(in, line)) {
      if (line == "%") continue;  // entry separator
      text += line;
      text += '\n';
    }
    corpus.files.push_back(path.filename().string());
  }
  if (text.size() < 1000) throw std::runtime_error("fortunes: no text found in " + directory);
  std::array<int64_t, 256> id;
  id.fill(-1);
  for (unsigned char c : text) {
    if (id[c] < 0) {
      id[c] = 0;
    }
  }
  for (int c = 0; c < 256; ++c) {
    if (id[c] == 0) {
      id[c] = static_cast<int64_t>(corpus.alphabet.size());
      corpus.alphabet.push_back(static_cast<char>(c));
    }
  }
  std::vector<int64_t> tokens(text.size());
  for (size_t i = 0; i < text.size(); ++i) tokens[i] = id[static_cast<unsigned char>(text[i])];
  const int64_t split = static_cast<int64_t>(tokens.size()) * 9 / 10;
  const auto all = ::torch::tensor(tokens, ::torch::kLong);
  corpus.train = all.narrow(0, 0, split).clone();
  corpus.valid = all.narrow(0, split, all.size(0) - split).clone();
  return corpus;
}

ImageSet load_idx(const std::string& images_path, const std::string& labels_path) {
  const std::string images = read_file(images_path), labels = read_file(labels_path);
  if (images.size() < 16 || big_endian(images, 0) != 0x00000803)
    throw std::runtime_error(images_path + ": not an idx3-ubyte image file (bad magic number)");
  if (labels.size() < 8 || big_endian(labels, 0) != 0x00000801)
    throw std::runtime_error(labels_path + ": not an idx1-ubyte label file (bad magic number)");
  const int64_t count = big_endian(images, 4), rows = big_endian(images, 8), cols = big_endian(images, 12);
  if (static_cast<int64_t>(big_endian(labels, 4)) != count)
    throw std::runtime_error(labels_path + ": label count differs from " + images_path);
  if (static_cast<int64_t>(images.size()) != 16 + count * rows * cols)
    throw std::runtime_error(images_path + ": file size does not match its header");
  if (static_cast<int64_t>(labels.size()) != 8 + count) throw std::runtime_error(labels_path + ": short file");
  ImageSet set;
  set.images = ::torch::from_blob(const_cast<char*>(images.data() + 16), {count, rows, cols}, ::torch::kUInt8)
                   .to(::torch::kFloat32)
                   .div_(255.0);
  set.labels = ::torch::from_blob(const_cast<char*>(labels.data() + 8), {count}, ::torch::kUInt8).to(::torch::kLong);
  return set;
}

FashionMnist load_fashion_mnist(const std::string& directory) {
  auto path = [&](const char* name) {
    const std::string p = directory + "/" + name;
    if (!fs::exists(p + ".gz") && !fs::exists(p))
      throw std::runtime_error("fashion-mnist: " + p + ".gz not found (install the Debian package "
                               "`dataset-fashion-mnist`)");
    return fs::exists(p + ".gz") ? p + ".gz" : p;
  };
  FashionMnist data;
  data.train = load_idx(path("train-images-idx3-ubyte"), path("train-labels-idx1-ubyte"));
  data.test = load_idx(path("t10k-images-idx3-ubyte"), path("t10k-labels-idx1-ubyte"));
  return data;
}

}  // namespace rmsnorm::reproduce
