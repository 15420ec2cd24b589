#include "runtime/engine.hpp"

#include <omp.h>
#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>

#include "backend/backend.hpp"
#include "backend/factory/device_comms.hpp"
#include "comm/alltoall.hpp"
#include "comm/communicator.hpp"
#include "comm/topology.hpp"
#include "config/run_fingerprint.hpp"
#include "core/error.hpp"
#include "core/exit.hpp"
#include "core/timer.hpp"
#include "io/checkpoint.hpp"
#include "io/model_identity.hpp"
#include "io/output_file.hpp"
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
#include "runtime/gather.hpp"
#include "runtime/layer_guard.hpp"
#include "runtime/memory.hpp"
#include "runtime/memory_estimate.hpp"
#include "runtime/progress.hpp"
#include "runtime/report.hpp"
#include "runtime/signals.hpp"
#include "runtime/watchdog.hpp"

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

// Where the results go: a new partial file, an earlier run's partial file, or (an older run's
// unfinished output) the output itself. Decided by rank 0, which holds the locks.
enum class ResultsMode : int { fresh = 0, continue_partial = 1, continue_in_place = 2 };

// Rank 0's outputs: checked against the inputs and each other, locked, their stale partial
// files cleared (io/output_file.hpp). The results' partial file is kept on failure: --resume
// continues it.
struct Outputs {
  std::unique_ptr<StagedOutput> results;
  std::unique_ptr<StagedOutput> report;
  ResultsMode mode = ResultsMode::fresh;
};

Outputs prepare_outputs(const RunConfig& config, const ScoringOptions& options, std::FILE* log) {
  namespace fs = std::filesystem;
  const NamedPaths inputs = {{"model", config.model},
                             {"input", config.input},
                             {"RUN.yaml", options.run_file},
                             {"moe.placement", config.moe.placement},
                             {"moe.expert_cache.trace", config.moe.expert_cache.trace}};
  Outputs out;
  out.results = std::make_unique<StagedOutput>("output", config.output, OutputKind::results, inputs,
                                               StagedOutput::Options{options.force, options.resume});
  out.results->keep_partial();
  // A run killed while it created the file's structure leaves a partial file with no journal:
  // nothing in it to continue, so it is started afresh.
  if (options.resume && fs::exists(out.results->partial()) &&
      !is_output_of_kind(out.results->partial(), OutputKind::results)) {
    std::error_code ec;
    fs::remove(out.results->partial(), ec);
    std::fprintf(log, "moe-score: %s held no complete results structure; starting afresh\n",
                 out.results->partial().c_str());
  }
  if (options.resume && fs::exists(out.results->partial()))
    out.mode = ResultsMode::continue_partial;
  else if (options.resume && fs::exists(config.output))
    out.mode = ResultsMode::continue_in_place;
  if (!out.results->note().empty() && out.mode != ResultsMode::continue_in_place)
    std::fprintf(log, "moe-score: %s\n", out.results->note().c_str());
  if (!config.report.empty()) {
    // Also output and report must differ, and neither may be the other's partial file.
    NamedPaths report_others = inputs;
    report_others.emplace_back("output", config.output);
    report_others.emplace_back("output.partial", partial_path(config.output));
    out.report = std::make_unique<StagedOutput>("report", config.report, OutputKind::report, report_others,
                                                StagedOutput::Options{options.force, false});
    if (!out.report->note().empty()) std::fprintf(log, "moe-score: %s\n", out.report->note().c_str());
  }
  return out;
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

RunOutcome run_scoring(const RunConfig& config, MPI_Comm world_comm, std::FILE* log, const ScoringOptions& options) {
  const double start = now_seconds();
  PhaseTimes times;
  auto world = make_mpi_communicator(world_comm);
  const int rank = world->rank();
  const int ranks = world->size();
  omp_set_num_threads(threads_per_rank(config, world_comm));
  // From here a stop signal ends the run within seconds wherever it is (runtime/watchdog.hpp).
  Watchdog watchdog("moe-score", rank, config.watchdog_seconds);

  // --- validate everything before heavy work ---
  std::unique_ptr<CheckpointReader> ckpt;
  std::unique_ptr<TokenDataset> tokens;
  std::unique_ptr<Backend> backend;
  std::unique_ptr<Topology> topology;
  std::unique_ptr<ExpertPlacement> placement;
  // A GPU run picks its device from the node-local rank (collective, so asked outside agree()).
  const int local_rank = config.backend == "cpu" ? -1 : node_local_rank(world_comm);
  agree(world_comm, [&] {
    ckpt = std::make_unique<CheckpointReader>(config.model, world_comm);
    ckpt->set_map_weights(config.mmap_weights);
    tokens = std::make_unique<TokenDataset>(config.input, world_comm);
    MOE_CHECK(tokens->num_seqs() > 0, "{}: holds no sequences (N = 0): nothing to score", config.input);
    MOE_CHECK(tokens->total_tokens() > 0, "{}: its sequences hold no tokens (S = 0): nothing to score", config.input);
    tokens->validate(ckpt->config().vocab_size, ckpt->config().max_positions);
    backend = make_backend(config.backend, local_rank);
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
  // The outputs: checked, locked and chosen by rank 0 (a second run on the same output stops here).
  Outputs outputs;
  agree(world_comm, [&] {
    if (rank == 0) outputs = prepare_outputs(config, options, log);
  });
  int mode = static_cast<int>(outputs.mode);
  MOE_MPI_CHECK(MPI_Bcast(&mode, 1, MPI_INT, 0, world_comm));
  const ResultsMode results_mode = static_cast<ResultsMode>(mode);
  const std::string results_path =
      results_mode == ResultsMode::continue_in_place ? config.output : partial_path(config.output);
  const ModelConfig& model = ckpt->config();
  // A belady trace's model is checked after loading, against the whole-model checksum (what
  // results and traces store), which only the weights' reads make.
  std::string traced_model;
  ExpertCacheSettings cache;
  agree(world_comm, [&] {
    cache = resolve_expert_cache(config, model, "", tokens->checksum());
    if (cache.trace) traced_model = cache.trace->model_checksum;
    // Belady plans with the trace's routed rows; static gating also computes padding rows, so the
    // experts a rank computes are not the trace's.
    MOE_CHECK(!cache.bounded || cache.policy != "belady" || config.moe.gating == GatingKind::dynamic,
              "'moe.expert_cache.policy: belady' needs 'moe.gating: dynamic' (static gating computes padding rows "
              "the trace does not show); use lifo or lru");
  });
  {
    // Before anything large is allocated: the model shard and the largest batch's workspace.
    int64_t max_tokens = 0;
    int64_t max_len = 0;
    for (int64_t first = 0; first < tokens->num_seqs(); first += config.batch_size) {
      int64_t sum = 0;
      for (int64_t s = first; s < std::min(tokens->num_seqs(), first + config.batch_size); ++s) {
        sum += tokens->length(s);
        max_len = std::max(max_len, tokens->length(s));
      }
      max_tokens = std::max(max_tokens, sum);
    }
    const MemoryEstimate need = estimate_memory(
        model, *placement, rank, cache.bounded ? cache.layer_slots : std::vector<int64_t>{}, topology->tp_size,
        max_tokens, max_len, omp_get_max_threads(), weight_bytes_held(ckpt->dtype("embed_tokens"), backend->name()));
    agree(world_comm, [&] { require_memory_on_nodes(need, world_comm); });
  }
  times.add("validate", now_seconds() - start);

  // --- load: this rank's experts and its tensor slices of everything else ---
  // Collectives on the backend's memory: MPI for cpu, NCCL on the backend's stream for cuda
  // (backend/factory/device_comms.hpp). `world` stays MPI for host-side control and the report.
  // One rank exchanges nothing: its unused all-to-all stays on MPI (no NCCL set-up).
  std::unique_ptr<Communicator> tp_comm;
  std::unique_ptr<Communicator> counts_comm;
  std::unique_ptr<AllToAll> alltoall;
  agree(world_comm, [&] {
    const CommunicatorMaker make =
        ranks > 1 ? backend_communicator_maker(*backend) : CommunicatorMaker(make_mpi_communicator);
    if (topology->tp_size > 1) tp_comm = make(topology->tp_comm);
    if (ranks > 1) counts_comm = make(world_comm);
    alltoall = make_alltoall(alltoall_name(config.moe.alltoall), *topology, *backend, make);
  });
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
    dispatcher =
        std::make_unique<AllToAllDispatcher>(dispatch_ws, *alltoall, *counts_comm, *placement, std::move(node_of));
    // Micro-batches pay only where a transfer moves while experts compute.
    dispatcher->set_chunks(alltoall->overlaps() ? config.moe.dispatch_chunks : 1);
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
  // The model's identity covers every weight byte. A bounded expert cache reads experts only as
  // batches need them, so the boxes read at load do not cover the model: rank 0 reads every weight
  // once more (in bounded boxes, io/model_identity.hpp, as moe-place does) and tells the others.
  std::string model_checksum;
  if (cache.bounded) {
    agree(world_comm, [&] {
      if (rank != 0) return;
      CheckpointReader whole(config.model, MPI_COMM_SELF);
      model_checksum = whole_model_checksum(whole);
    });
    int length = static_cast<int>(model_checksum.size());
    MOE_MPI_CHECK(MPI_Bcast(&length, 1, MPI_INT, 0, world_comm));
    model_checksum.resize(static_cast<std::size_t>(length));
    MOE_MPI_CHECK(MPI_Bcast(model_checksum.data(), length, MPI_CHAR, 0, world_comm));
  }
  agree(world_comm, [&] {
    if (!cache.bounded) model_checksum = ckpt->model_checksum(world_comm);
    MOE_CHECK(traced_model.empty() || traced_model == model_checksum,
              "run file: 'moe.expert_cache.trace' {} traced another model (model_checksum {}, this model's {})",
              config.moe.expert_cache.trace, traced_model, model_checksum);
    const ResultAttributes attrs{
        model_checksum, tokens->checksum(), config.effective_yaml, run_fingerprint(config), ranks, bsz};
    writer =
        std::make_unique<ResultWriter>(results_path, world_comm, *tokens, attrs, results_mode != ResultsMode::fresh);
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
  const std::vector<std::string> weight_warnings = gather_unique_lines(world_comm, ckpt->warnings());
  if (rank == 0 && log)
    for (const std::string& line : weight_warnings) std::fprintf(log, "moe-score: warning: %s\n", line.c_str());
  LayerGuard guard(world_comm, config.on_nonfinite, bsz, &watchdog);
  transformer->set_layer_observer(&guard);
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
  // An error inside a step is this rank's alone (the others may wait in a collective): end the
  // job from here, before unwinding would close the results file collectively (a hang).
  watchdog.arm();
  try {
    for (int64_t step = 0; step < num_steps; ++step) {
      // Asked of all ranks together, so that all stop after the same step (runtime/signals.hpp);
      // the guard asks again between layers, so a long step stops within a layer's time.
      if (stop_requested(world_comm)) {
        watchdog.stop_acknowledged();
        stopped = true;
        break;
      }
      const int64_t b = schedule.batch(step, group);
      {
        ScopedPhase phase(&times, "read");
        tokens->read(first_seq(b), end_seq(b) - first_seq(b), batch);
      }
      guard.begin_batch(b);
      try {
        transformer->score(batch, logprobs.data(), &times);
        guard.check_scores(batch, logprobs.data());  // also asks for a stop, like every layer
      } catch (const StopRequested&) {               // on every rank together: this step is not written
        stopped = true;
        break;
      }
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
      watchdog.beat();
    }
  } catch (const std::exception& e) {
    abort_job(e.what(), exit_code_for(e));
  }
  const bool writer_resumed = writer->resumed();
  writer->close();
  // Complete: the partial file becomes the output (renamed by rank 0 after every rank closed it).
  if (rank == 0 && !stopped && results_mode != ResultsMode::continue_in_place) {
    try {
      outputs.results->commit();
    } catch (const std::exception& e) {
      abort_job(e.what(), exit_code_for(e));
    }
  }
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
  in.dispatch_chunks = dispatcher->chunks();
  RunOutcome outcome{make_report(in), stopped, done.batches, num_batches, stopped ? results_path : config.output};
  const std::vector<int64_t> marked = gather_to_root(world_comm, guard.marked());
  outcome.report["numerics"] = {{"on_nonfinite", config.on_nonfinite == NonFiniteAction::stop ? "stop" : "mark"},
                                {"nonfinite_sequences", marked},
                                {"weight_warnings", weight_warnings}};
  if (rank == 0 && log && !marked.empty())
    std::fprintf(log,
                 "moe-score: warning: %zu sequence(s) had non-finite values and have NaN scores "
                 "(on_nonfinite: mark; the report lists them under numerics.nonfinite_sequences)\n",
                 marked.size());
  outcome.report["resume"] = {{"resumed", writer_resumed},
                              {"batches_total", num_batches},
                              {"batches_done_before", done_before.batches},
                              {"batches_done", done.batches},
                              {"stopped_by_signal", stopped}};
  // Written by rank 0 (partial file, then rename); a failure ends the job with exit code 74 while
  // the other ranks wait in the barrier below.
  if (rank == 0 && outputs.report) {
    try {
      write_text_output(*outputs.report, outcome.report.dump(2) + "\n");
    } catch (const std::exception& e) {
      abort_job(e.what(), exit_code_for(e));
    }
  }
  MOE_MPI_CHECK(MPI_Barrier(world_comm));
  return outcome;
}

}  // namespace moe
