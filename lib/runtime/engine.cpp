#include "runtime/engine.hpp"

#include <omp.h>
#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "backend/backend.hpp"
#include "comm/alltoall.hpp"
#include "comm/communicator.hpp"
#include "comm/topology.hpp"
#include "config/run_fingerprint.hpp"
#include "core/error.hpp"
#include "core/timer.hpp"
#include "io/checkpoint.hpp"
#include "io/result_writer.hpp"
#include "io/token_dataset.hpp"
#include "io/trace_writer.hpp"
#include "model/transformer.hpp"
#include "moe/alltoall_dispatcher.hpp"
#include "moe/cache/cache_settings.hpp"
#include "moe/cached_expert_store.hpp"
#include "moe/expert_store.hpp"
#include "moe/placement.hpp"
#include "moe/placement_file.hpp"
#include "runtime/batch_schedule.hpp"
#include "runtime/memory.hpp"
#include "runtime/progress.hpp"
#include "runtime/report.hpp"
#include "runtime/signals.hpp"

namespace moe {

namespace {

// Runs `fn` on every rank; if any rank throws, every rank throws the message of the lowest
// failing rank, so validation errors end the job cleanly instead of leaving ranks waiting.
template <typename Fn>
void agree(MPI_Comm comm, Fn&& fn) {
  std::string message;
  try {
    fn();
  } catch (const Error& e) {
    message = e.what();
  }
  int rank = 0;
  MOE_MPI_CHECK(MPI_Comm_rank(comm, &rank));
  int failed_rank = message.empty() ? INT32_MAX : rank;
  MOE_MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, &failed_rank, 1, MPI_INT, MPI_MIN, comm));
  if (failed_rank == INT32_MAX) return;
  int length = static_cast<int>(message.size());
  MOE_MPI_CHECK(MPI_Bcast(&length, 1, MPI_INT, failed_rank, comm));
  message.resize(static_cast<std::size_t>(length));
  MOE_MPI_CHECK(MPI_Bcast(message.data(), length, MPI_CHAR, failed_rank, comm));
  throw CollectiveError(message);
}

// The results and the report are written only after the work: check now that they can be, and
// that neither would overwrite an input or the other.
void check_output_paths(const RunConfig& config) {
  namespace fs = std::filesystem;
  const std::pair<const char*, const std::string*> outputs[] = {{"output", &config.output}, {"report", &config.report}};
  const std::pair<const char*, const std::string*> others[] = {
      {"model", &config.model}, {"input", &config.input}, {"output", &config.output}};
  for (const auto& [key, path] : outputs) {
    if (path->empty()) continue;
    MOE_CHECK(!fs::is_directory(*path), "{}: '{}' is a folder, not a file", *path, key);
    const fs::path folder = fs::absolute(*path).parent_path();
    MOE_CHECK(fs::is_directory(folder), "{}: the folder of '{}' ({}) does not exist", *path, key, folder.string());
    for (const auto& [other_key, other] : others) {
      if (path == other || other->empty()) continue;
      std::error_code ec;  // equivalent() needs both files to exist; the same name is the same file
      const bool same = fs::absolute(*path).lexically_normal() == fs::absolute(*other).lexically_normal() ||
                        fs::equivalent(*path, *other, ec);
      MOE_CHECK(!same, "{}: '{}' is the same file as '{}' ({}), which it would overwrite", *path, key, other_key,
                *other);
    }
  }
}

// OpenMP threads for this rank: `threads`, else OMP_NUM_THREADS, else the cores this process is
// bound to (srun/mpirun binding), else, unbound, the node's cores shared evenly by the ranks on
// it. More threads than cores in total makes OpenMP's
// spinning workers and MPI's polling fight over them: 2 ranks x 2 threads on 2 cores ran the
// example 20x slower than 2 x 1.
int threads_per_rank(const RunConfig& config, MPI_Comm comm) {
  if (config.threads > 0) return static_cast<int>(config.threads);
  if (const char* env = std::getenv("OMP_NUM_THREADS"); env && std::atoi(env) > 0) return std::atoi(env);
  MPI_Comm node = MPI_COMM_NULL;
  MOE_MPI_CHECK(MPI_Comm_split_type(comm, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &node));
  int local = 1;
  MOE_MPI_CHECK(MPI_Comm_size(node, &local));
  MOE_MPI_CHECK(MPI_Comm_free(&node));
  cpu_set_t cpus;
  const int online = static_cast<int>(sysconf(_SC_NPROCESSORS_ONLN));
  const int allowed = sched_getaffinity(0, sizeof(cpus), &cpus) == 0 ? CPU_COUNT(&cpus) : online;
  if (allowed < online) return std::max(1, allowed);
  return std::max(1, online / local);
}

}  // namespace

RunOutcome run_scoring(const RunConfig& config, MPI_Comm world_comm, std::FILE* log, bool resume) {
  const double start = now_seconds();
  PhaseTimes times;
  auto world = make_mpi_communicator(world_comm);
  const int rank = world->rank();
  const int ranks = world->size();
  omp_set_num_threads(threads_per_rank(config, world_comm));

  // --- validate everything before heavy work ---
  std::unique_ptr<CheckpointReader> ckpt;
  std::unique_ptr<TokenDataset> tokens;
  std::unique_ptr<Backend> backend;
  std::unique_ptr<Topology> topology;
  std::unique_ptr<ExpertPlacement> placement;
  agree(world_comm, [&] {
    check_output_paths(config);
    ckpt = std::make_unique<CheckpointReader>(config.model, world_comm);
    tokens = std::make_unique<TokenDataset>(config.input, world_comm);
    tokens->validate(ckpt->config().vocab_size, ckpt->config().max_positions);
    // The model's collectives and the all-to-all run on MPI communicators over host memory; a
    // device backend needs the NCCL communicator wired into them first.
    MOE_CHECK(config.backend != "cuda" || ranks == 1,
              "backend 'cuda' runs on one rank only for now: the multi-rank GPU path (NCCL communicators in the "
              "model and the all-to-all) is not wired yet; use backend 'cpu' for {} ranks",
              ranks);
    backend = make_backend(config.backend);
    placement =
        config.moe.placement.empty()
            ? std::make_unique<ExpertPlacement>(ckpt->config(), ranks)
            : std::make_unique<ExpertPlacement>(read_placement_file(config.moe.placement, ckpt->config(), ranks));
  });
  // Topology validates ranks_per_node and tp itself, on every rank alike.
  agree(world_comm, [&] {
    topology = std::make_unique<Topology>(world_comm, static_cast<int>(config.parallel.ranks_per_node),
                                          static_cast<int>(config.parallel.tp));
  });
  const ModelConfig& model = ckpt->config();
  ExpertCacheSettings cache;
  agree(world_comm, [&] {
    cache = resolve_expert_cache(config, model, ckpt->fingerprint(), tokens->checksum());
    // Belady plans with the trace's routed rows; static gating also computes padding rows, so the
    // experts a rank computes are not the trace's.
    MOE_CHECK(!cache.bounded || cache.policy != "belady" || config.moe.gating == GatingKind::dynamic,
              "'moe.expert_cache.policy: belady' needs 'moe.gating: dynamic' (static gating computes padding rows "
              "the trace does not show); use lifo or lru");
  });
  times.add("validate", now_seconds() - start);

  // --- load: this rank's experts and its tensor slices of everything else ---
  std::unique_ptr<Communicator> tp_comm = make_mpi_communicator(topology->tp_comm);
  std::unique_ptr<AllToAll> alltoall = make_alltoall(alltoall_name(config.moe.alltoall), *topology, *backend);
  std::unique_ptr<ExpertStore> experts;
  std::unique_ptr<Transformer> transformer;
  Workspace dispatch_ws(*backend);
  Workspace expert_ws(*backend);
  std::unique_ptr<Dispatcher> dispatcher;
  if (ranks == 1)
    dispatcher = std::make_unique<LocalDispatcher>(dispatch_ws);
  else {
    std::vector<int> node_of(static_cast<std::size_t>(ranks));
    for (int r = 0; r < ranks; ++r) node_of[static_cast<std::size_t>(r)] = topology->node_of(r);
    dispatcher = std::make_unique<AllToAllDispatcher>(dispatch_ws, *alltoall, *world, *placement, std::move(node_of));
  }
  // moe.expert_cache.slots: all keeps every local expert resident; a count or share makes the
  // bounded cache, which belady plans with the trace's batches in this run's step order.
  CachedExpertStore* cached = nullptr;
  const auto make_store = [&]() -> std::unique_ptr<ExpertStore> {
    if (!cache.bounded) return std::make_unique<ResidentExpertStore>(*ckpt, *backend, *placement, rank);
    auto store = std::make_unique<CachedExpertStore>(*ckpt, *backend, *placement, rank,
                                                     CachedExpertStoreOptions{cache.layer_slots, cache.policy, {}});
    cached = store.get();
    return store;
  };
  {
    ScopedPhase phase(&times, "load");
    agree(world_comm, [&] {
      TransformerOptions options;
      options.gating = {config.moe.gating, config.moe.capacity_factor};
      options.tp = {topology->tp_size > 1 ? tp_comm.get() : nullptr, topology->tp_rank, topology->tp_size};
      experts = make_store();
      transformer = std::make_unique<Transformer>(*ckpt, *backend, *experts, *dispatcher, expert_ws, options);
    });
  }

  // Global batch b holds sequences [b * B, (b + 1) * B). The results file (with its resume
  // journal) is opened first: the schedule deals the batches not yet done out to the dp groups;
  // at step s group g runs pending batch s * dp + g, its tp ranks together. Every rank takes part
  // in every step (a group without a batch runs an empty one), as the MoE all-to-alls and the
  // collective writes require.
  const int64_t n = tokens->num_seqs();
  const int64_t bsz = config.batch_size;
  const int64_t dp = topology->dp_size;
  const int64_t group = topology->dp_rank;
  const int64_t num_batches = (n + bsz - 1) / bsz;
  std::unique_ptr<ResultWriter> writer;
  agree(world_comm, [&] {
    const ResultAttributes attrs{
        ckpt->fingerprint(), tokens->checksum(), config.effective_yaml, run_fingerprint(config), ranks, bsz};
    writer = std::make_unique<ResultWriter>(config.output, world_comm, *tokens, attrs, resume);
  });
  std::unique_ptr<TraceWriter> trace;
  if (config.moe.trace)
    agree(world_comm, [&] {
      trace = std::make_unique<TraceWriter>(writer->file(), model, *tokens, bsz, config.moe.trace_topk,
                                            writer->resumed(), topology->tp_size > 1 ? tp_comm.get() : nullptr);
    });
  std::vector<TraceLayerBatch> trace_layers;
  for (const MoeLayer* layer : transformer->moe_layers())
    trace_layers.push_back({layer->layer(), &layer->last_counts(), &layer->last_topk_ids()});
  const BatchSchedule schedule(writer->journal(), dp);
  const int64_t num_steps = schedule.num_steps();
  if (cached && cache.trace) {
    // Belady's future: each step's batches of every dp group, as the schedule deals them.
    std::vector<std::vector<int64_t>> step_batches(static_cast<std::size_t>(num_steps));
    for (int64_t s = 0; s < num_steps; ++s)
      for (int64_t g = 0; g < dp; ++g) step_batches[static_cast<std::size_t>(s)].push_back(schedule.batch(s, g));
    std::vector<RequestSteps> future(static_cast<std::size_t>(model.num_layers));
    agree(world_comm, [&] {
      for (int64_t i = 0; i < model.num_layers; ++i)
        if (model.is_moe_layer(i))
          future[static_cast<std::size_t>(i)] =
              local_request_steps(*cache.trace, i, placement->local_experts(i, rank), step_batches);
    });
    cached->set_future(std::move(future));
  }
  // Sequences [first, end) of global batch b; b = -1 (an idle rank) is empty.
  const auto first_seq = [&](int64_t b) { return b >= 0 ? b * bsz : n; };
  const auto end_seq = [&](int64_t b) { return b >= 0 ? std::min(n, (b + 1) * bsz) : n; };
  const auto batch_tokens = [&](int64_t b) {
    int64_t sum = 0;
    for (int64_t s = first_seq(b); s < end_seq(b); ++s) sum += tokens->length(s);
    return sum;
  };
  int64_t max_tokens = 0;
  int64_t max_len = 0;
  for (int64_t step = 0; step < num_steps; ++step) {
    const int64_t b = schedule.batch(step, group);
    for (int64_t s = first_seq(b); s < end_seq(b); ++s) max_len = std::max(max_len, tokens->length(s));
    max_tokens = std::max(max_tokens, batch_tokens(b));
  }
  {
    ScopedPhase phase(&times, "warmup");
    transformer->reserve(std::min(bsz, n), max_tokens, max_len);
    experts->begin_run();  // a cache forgets the warm-up batch's requests
  }
  const std::size_t growths_after_reserve =
      transformer->workspace().growths() + dispatch_ws.growths() + expert_ws.growths();

  ProgressTotals done{schedule.num_done_before(), 0};
  for (int64_t b = 0; b < num_batches; ++b)
    if (writer->journal()[static_cast<std::size_t>(b)] != 0) done.tokens += batch_tokens(b);
  const ProgressTotals done_before = done;
  Progress progress({num_batches, tokens->total_tokens()}, done_before, config.progress_seconds, rank == 0, log);
  TokenBatch batch;
  std::vector<float> logprobs(static_cast<std::size_t>(max_tokens));
  int64_t seqs_this_run = 0;
  bool stopped = false;
  const double loop_start = now_seconds();
  const bool writes = topology->tp_rank == 0;  // one rank of each group writes its results
  TokenBatch no_batch;
  tokens->read(0, 0, no_batch);
  for (int64_t step = 0; step < num_steps; ++step) {
    // Asked of all ranks together, so that all stop after the same step (runtime/signals.hpp).
    if (stop_requested(world_comm)) {
      stopped = true;
      break;
    }
    const int64_t b = schedule.batch(step, group);
    {
      ScopedPhase phase(&times, "read");
      tokens->read(first_seq(b), end_seq(b) - first_seq(b), batch);
    }
    transformer->score(batch, logprobs.data(), &times);
    {
      ScopedPhase phase(&times, "write");
      writer->write_batch(writes ? batch : no_batch, logprobs.data());
      if (trace) trace->write_batch(b, batch.num_tokens(), trace_layers, writes);
      writer->mark_done(writes ? b : -1);  // the resume journal: durable after the results
    }
    // What the whole job has done: every group's batch of this step is complete.
    for (int64_t slot = 0; slot < dp; ++slot) {
      const int64_t done_batch = schedule.batch(step, slot);
      done.batches += done_batch >= 0 ? 1 : 0;
      done.tokens += batch_tokens(done_batch);
      seqs_this_run += end_seq(done_batch) - first_seq(done_batch);
    }
    progress.update(done);
  }
  const bool writer_resumed = writer->resumed();
  writer->close();
  const double loop_seconds = now_seconds() - loop_start;
  progress.finish(done);
  const std::size_t growths = transformer->workspace().growths() + dispatch_ws.growths() + expert_ws.growths();

  ReportInputs in{config, model, *world, *backend, *transformer, *experts, times};
  in.topology = topology.get();
  in.total_seconds = now_seconds() - start;
  in.loop_seconds = loop_seconds;
  // Throughput counts this run's work: a resumed or stopped run did only part of the input.
  in.num_seqs = seqs_this_run;
  in.num_tokens = done.tokens - done_before.tokens;
  in.num_steps = num_steps;
  in.workspace_growths_in_loop = growths - growths_after_reserve;
  RunOutcome outcome{make_report(in), stopped, done.batches, num_batches};
  outcome.report["resume"] = {{"resumed", writer_resumed},
                              {"batches_total", num_batches},
                              {"batches_done_before", done_before.batches},
                              {"batches_done", done.batches},
                              {"stopped_by_signal", stopped}};
  // Written by rank 0; agreed on so that a failure ends every rank together.
  agree(world_comm, [&] {
    if (rank != 0 || config.report.empty()) return;
    std::ofstream out(config.report);
    MOE_CHECK(out.good(), "{}: cannot write the run report", config.report);
    out << outcome.report.dump(2) << "\n";
  });
  return outcome;
}

}  // namespace moe
