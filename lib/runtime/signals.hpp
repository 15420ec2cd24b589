#pragma once
// Graceful stop on SIGTERM or SIGUSR1 (Slurm's warning before a time limit, preemption, scancel,
// a job script forwarding either): the handler only records the signal; the batch loop asks all
// ranks together once per step, so every rank stops after the same step and the resume journal
// is consistent. docs/slurm.md explains the exit code (kStoppedExitCode).
#include <mpi.h>

namespace moe {

// Exit code of a run stopped by a signal before it finished: EX_TEMPFAIL from sysexits.h
// ("try again later"). Job scripts requeue on it; a re-run with --resume continues.
inline constexpr int kStoppedExitCode = 75;

// Installs the handlers for SIGTERM and SIGUSR1 (idempotent). Call early in main, after MPI_Init.
void install_stop_handlers();

// The stop signal this rank has received (0: none yet).
int stop_signal_received();

// Collective over comm: true on every rank as soon as any rank has received a stop signal.
bool stop_requested(MPI_Comm comm);

}  // namespace moe
