#pragma once
// The JSON run report (one per run, written by rank 0): layout, throughput, time per phase,
// memory, routing statistics per MoE layer. Figures are reduced over ranks (max for times and
// memory, sums for counts), so the report is the whole job's.
#include <nlohmann/json.hpp>

#include "backend/backend.hpp"
#include "comm/communicator.hpp"
#include "comm/topology.hpp"
#include "config/model_config.hpp"
#include "config/run_config.hpp"
#include "core/timer.hpp"
#include "model/transformer.hpp"
#include "moe/expert_store.hpp"

namespace moe {

struct ReportInputs {
  const RunConfig& config;
  const ModelConfig& model;
  Communicator& world;
  Backend& backend;
  const Transformer& transformer;
  const ExpertStore& experts;
  const PhaseTimes& times;
  const Topology* topology = nullptr;
  double total_seconds = 0;
  double loop_seconds = 0;
  int64_t num_seqs = 0;
  int64_t num_tokens = 0;
  int64_t num_steps = 0;
  std::size_t workspace_growths_in_loop = 0;
  int64_t dispatch_chunks = 1;  // micro-batches the dispatcher ran (1 where the all-to-all cannot overlap)
};

// Collective over inputs.world.
nlohmann::json make_report(const ReportInputs& in);

}  // namespace moe
