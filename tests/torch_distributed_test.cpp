// The C++ tensor-parallel norm (rmsnorm/torch/distributed.hpp) over real
// c10d gloo process groups on 127.0.0.1: the test launches this binary again
// as 2 and 3 worker processes (RMSNORM_DIST_* in the environment), which meet
// through a FileStore, norm their columns, and save their results; the parent
// compares them with the unsharded norm. Workers are bounded by a timeout on
// the process group and on the wait, and always reaped.
#define USE_C10D_GLOO 1
#include <gtest/gtest.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <torch/csrc/distributed/c10d/FileStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/torch.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "rmsnorm/torch/distributed.hpp"
#include "rmsnorm/torch/ops.hpp"

extern char** environ;

namespace {

constexpr int64_t kN = 37;

struct Case {
  bool layer_norm;
  double p;
};
const Case kCases[] = {{false, 1.0}, {false, 0.25}, {false, 0.5}, {true, 1.0}};

std::vector<at::Tensor> inputs(int index) {
  ::torch::manual_seed(100 + index);
  const auto f64 = ::torch::TensorOptions().dtype(at::kDouble);
  at::Tensor x = (::torch::randn({4, 3, kN}, f64) * 2 + 0.5).to(at::kFloat);
  at::Tensor dy = ::torch::randn({4, 3, kN}, f64).to(at::kFloat);
  at::Tensor weight = (1 + 0.5 * ::torch::randn({kN}, f64)).to(at::kFloat);
  at::Tensor bias = (0.5 * ::torch::randn({kN}, f64)).to(at::kFloat);
  return {x, dy, weight, bias};
}

const char* env(const char* name) {
  const char* value = std::getenv(name);
  return value ? value : "";
}

// ------------------------------------------------------------------ a worker
TEST(TorchDistributedWorker, Run) {
  if (std::string(env("RMSNORM_DIST_RANK")).empty()) GTEST_SKIP() << "run by TorchDistributed.* as a worker process";
  const int rank = std::atoi(env("RMSNORM_DIST_RANK")), world = std::atoi(env("RMSNORM_DIST_WORLD"));
  const std::string dir = env("RMSNORM_DIST_DIR");
  at::set_num_threads(1);
  auto store = c10::make_intrusive<c10d::FileStore>(dir + "/store", world);
  auto options = c10d::ProcessGroupGloo::Options::create(std::chrono::milliseconds(60000));
  options->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1"));
  c10::intrusive_ptr<c10d::ProcessGroup> group = c10::make_intrusive<c10d::ProcessGroupGloo>(store, rank, world, options);

  if (std::string(env("RMSNORM_DIST_JOB")) == "errors") {
    std::string message;
    try {
      rmsnorm::torch::ShardedNorm bad(rmsnorm::torch::ShardedNormOptions(kN, group).local_hidden(5 + rank));
    } catch (const c10::Error& e) {
      message = e.what_without_backtrace();
    }
    std::vector<at::Tensor> out{::torch::tensor(std::vector<int64_t>(message.begin(), message.end()))};
    ::torch::save(out, dir + "/rank" + std::to_string(rank) + ".pt");
    return;
  }
  std::vector<at::Tensor> out;
  const std::vector<int64_t> widths = rmsnorm::torch::even_split(kN, world);
  for (int i = 0; i < static_cast<int>(std::size(kCases)); ++i) {
    const std::vector<at::Tensor> in = inputs(i);
    rmsnorm::torch::ShardedNorm norm(rmsnorm::torch::ShardedNormOptions(kN, group)
                                         .layer_norm(kCases[i].layer_norm)
                                         .p(kCases[i].p)
                                         .eps(kCases[i].layer_norm ? 1e-5 : 1e-6)
                                         .bias(kCases[i].layer_norm));
    const int64_t begin = norm->column_begin, width = widths[rank];
    {
      ::torch::NoGradGuard no_grad;
      norm->weight.copy_(in[2].slice(0, begin, begin + width));
      if (norm->bias.defined()) norm->bias.copy_(in[3].slice(0, begin, begin + width));
    }
    at::Tensor x = in[0].slice(2, begin, begin + width).clone().requires_grad_();
    at::Tensor y = norm(x);
    y.backward(in[1].slice(2, begin, begin + width).contiguous());
    out.push_back(y.detach());
    out.push_back(x.grad());
    out.push_back(norm->weight.grad());
    out.push_back(norm->bias.defined() ? norm->bias.grad() : ::torch::zeros({width}));
  }
  ::torch::save(out, dir + "/rank" + std::to_string(rank) + ".pt");
}

// ------------------------------------------------------------------ the parent
// Starts `world` workers and waits for them (at most 120 s); returns "" or what went wrong.
std::string run_workers(int world, const std::string& job, const std::string& dir) {
  std::vector<pid_t> pids;
  for (int rank = 0; rank < world; ++rank) {
    std::vector<std::string> env_strings;
    for (char** e = environ; *e; ++e) env_strings.emplace_back(*e);
    env_strings.push_back("RMSNORM_DIST_RANK=" + std::to_string(rank));
    env_strings.push_back("RMSNORM_DIST_WORLD=" + std::to_string(world));
    env_strings.push_back("RMSNORM_DIST_DIR=" + dir);
    env_strings.push_back("RMSNORM_DIST_JOB=" + job);
    std::vector<char*> envp;
    for (std::string& s : env_strings) envp.push_back(s.data());
    envp.push_back(nullptr);
    std::string self = std::filesystem::read_symlink("/proc/self/exe");
    std::string filter = "--gtest_filter=TorchDistributedWorker.Run";
    char* argv[] = {self.data(), filter.data(), nullptr};
    pid_t pid = 0;
    if (posix_spawn(&pid, self.c_str(), nullptr, nullptr, argv, envp.data()) != 0) return "posix_spawn failed";
    pids.push_back(pid);
  }
  std::string problem;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  for (pid_t pid : pids) {
    int status = 0;
    while (waitpid(pid, &status, WNOHANG) == 0) {
      if (std::chrono::steady_clock::now() > deadline) {
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
        problem = "a worker did not finish within 120 s (a hang)";
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    if (problem.empty() && !(WIFEXITED(status) && WEXITSTATUS(status) == 0)) problem = "a worker failed";
  }
  return problem;
}

std::string scratch_dir(const std::string& name) {
  const auto dir = std::filesystem::temp_directory_path() /
                   ("rmsnorm-dist-" + name + "-" + std::to_string(getpid()));
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir.string();
}

std::vector<at::Tensor> load(const std::string& file) {
  std::vector<at::Tensor> tensors;
  ::torch::load(tensors, file);
  return tensors;
}

class TorchDistributed : public ::testing::TestWithParam<int> {};
INSTANTIATE_TEST_SUITE_P(World, TorchDistributed, ::testing::Values(2, 3));

TEST_P(TorchDistributed, EveryRankMatchesTheUnshardedNorm) {
  const int world = GetParam();
  const std::string dir = scratch_dir("cases");
  ASSERT_EQ(run_workers(world, "cases", dir), "");
  const std::vector<int64_t> widths = rmsnorm::torch::even_split(kN, world);
  for (int i = 0; i < static_cast<int>(std::size(kCases)); ++i) {
    const std::vector<at::Tensor> in = inputs(i);
    at::Tensor x = in[0].clone().requires_grad_(), w = in[2].clone().requires_grad_(),
               b = in[3].clone().requires_grad_();
    const at::Tensor y = kCases[i].layer_norm ? rmsnorm::torch::layer_norm(x, {kN}, w, b, 1e-5)
                                              : rmsnorm::torch::rms_norm(x, {kN}, w, c10::nullopt, 1e-6, kCases[i].p,
                                                                         "inside");
    y.backward(in[1]);
    int64_t begin = 0;
    for (int rank = 0; rank < world; ++rank) {
      const std::vector<at::Tensor> got = load(dir + "/rank" + std::to_string(rank) + ".pt");
      const int64_t end = begin + widths[rank];
      SCOPED_TRACE("case " + std::to_string(i) + ", rank " + std::to_string(rank) + " of " + std::to_string(world));
      EXPECT_TRUE(::torch::allclose(got[4 * i], y.detach().slice(2, begin, end), 3e-5, 1e-5)) << "y";
      EXPECT_TRUE(::torch::allclose(got[4 * i + 1], x.grad().slice(2, begin, end), 3e-5, 1e-5)) << "dx";
      EXPECT_TRUE(::torch::allclose(got[4 * i + 2], w.grad().slice(0, begin, end), 3e-5, 1e-4)) << "dweight";
      if (kCases[i].layer_norm) {
        EXPECT_TRUE(::torch::allclose(got[4 * i + 3], b.grad().slice(0, begin, end), 3e-5, 1e-4)) << "dbias";
      }
      begin = end;
    }
  }
  std::filesystem::remove_all(dir);
}

TEST(TorchDistributedErrors, BadWidthsAreTheSameErrorOnEveryRank) {
  const std::string dir = scratch_dir("errors");
  ASSERT_EQ(run_workers(2, "errors", dir), "");
  std::vector<std::string> messages;
  for (int rank = 0; rank < 2; ++rank) {
    const at::Tensor codes = load(dir + "/rank" + std::to_string(rank) + ".pt")[0];
    std::string message;
    for (int64_t i = 0; i < codes.numel(); ++i) message.push_back(static_cast<char>(codes[i].item<int64_t>()));
    messages.push_back(message);
  }
  EXPECT_NE(messages[0].find("the ranks' widths [5, 6] must be >= 1 and add up to global_hidden = 37"),
            std::string::npos)
      << messages[0];
  EXPECT_EQ(messages[0], messages[1]);
  std::filesystem::remove_all(dir);
}

TEST(TorchDistributedErrors, EvenSplitNeedsARank) {
  EXPECT_EQ(rmsnorm::torch::even_split(37, 3), (std::vector<int64_t>{13, 12, 12}));
  EXPECT_THROW(rmsnorm::torch::even_split(37, 0), c10::Error);
}

}  // namespace
