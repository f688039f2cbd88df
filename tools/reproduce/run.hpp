// `rmsnorm reproduce`: every task x seed (its variants and settings trained
// together), with a progress bar, then the report files in the output
// directory.
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace rmsnorm::reproduce {

struct Options {
  std::string scale = "default";  // quick, default, full
  std::string out_dir = "reproduce-out";
  int seeds = 0;                   // 0: the scale's
  std::vector<std::string> tasks;  // empty: all (gru_lm, transformer_lm, fashion_cnn)
  int threads = 0;                 // LibTorch's and our kernels' threads; 0: every core
  std::string fortunes_dir = "/usr/share/games/fortunes";
  std::string fashion_dir = "/usr/share/datasets/fashion-mnist";
  std::string python = "/usr/bin/python3";
  std::string plot_script;         // scripts/plot_reproduce.py
  std::string command;             // as typed, for the report
};

// Returns 0, or throws std::runtime_error / std::invalid_argument with a message.
int run(const Options& options, const nlohmann::json& machine);

}  // namespace rmsnorm::reproduce
