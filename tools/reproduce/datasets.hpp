// Real data that ships offline, read from Debian packages:
//   - text: the `fortunes` package, plain files of quotations under
//     /usr/share/games/fortunes (entries separated by lines holding '%');
//   - images: `dataset-fashion-mnist`, gzipped idx files under
//     /usr/share/datasets/fashion-mnist (MIT licence).
#pragma once

#include <string>
#include <vector>

#include <torch/torch.h>

namespace rmsnorm::reproduce {

struct CharCorpus {
  std::vector<char> alphabet;  // token id -> byte
  ::torch::Tensor train, valid;  // int64 token ids
  std::vector<std::string> files;
  int64_t vocab() const { return static_cast<int64_t>(alphabet.size()); }
};

// Reads every fortune file in `directory` (sorted by name; the .dat index
// files and links are skipped), drops the '%' separator lines, maps bytes to
// ids, and splits the text 90% / 10% into train / validation. Throws
// std::runtime_error naming the directory when it has no text.
CharCorpus load_fortunes(const std::string& directory = "/usr/share/games/fortunes");

struct ImageSet {
  ::torch::Tensor images;  // (count, 28, 28) float32 in [0, 1]
  ::torch::Tensor labels;  // (count) int64
};

// Reads an idx3 image file and its idx1 label file (gzipped or not); throws
// std::runtime_error naming the file on a bad magic number, a short file or
// counts that disagree.
ImageSet load_idx(const std::string& images_path, const std::string& labels_path);

struct FashionMnist {
  ImageSet train, test;
};

FashionMnist load_fashion_mnist(const std::string& directory = "/usr/share/datasets/fashion-mnist");

}  // namespace rmsnorm::reproduce
