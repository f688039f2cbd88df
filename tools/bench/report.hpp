// What the bench prints and saves: a table per group, the JSON document with
// every figure and the machine, and the machine description for `info`.
#pragma once

#include <ostream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "tools/bench/harness.hpp"

namespace rmsnorm::bench {

struct Machine {
  std::string cpu_model;
  int logical_cpus = 0;
  std::string simd_target;
  std::vector<std::string> simd_targets;
  int max_threads = 0;
  double memory_gib = 0;
  std::string compiler;
  std::string library_version;
  std::string torch_version, onednn_version;  // "" when not built in
  std::string onednn_isa_cap;                 // "" when oneDNN picks its own (cap_onednn_isa)
  std::string date_utc;
};

Machine describe_machine();
nlohmann::json to_json(const Machine& m);

// The baselines each row's speed-up is computed against, in table order.
const std::vector<std::pair<std::string, std::string>>& speedup_baselines();  // key, short label

void print_table(std::ostream& out, const Group& group);
nlohmann::json to_json(const Settings& settings, const Machine& machine, const std::vector<Group>& groups);

// True when every checked implementation passed.
bool all_checks_passed(const std::vector<Group>& groups);

}  // namespace rmsnorm::bench
