#include "runtime/signals.hpp"

#include <csignal>

#include "core/error.hpp"

namespace moe {

namespace {

// Written by the handler, read by the batch loop: only sig_atomic_t is safe to share with one.
volatile std::sig_atomic_t g_stop_signal = 0;

extern "C" void record_stop_signal(int signal) {
  g_stop_signal = signal;
}

}  // namespace

void install_stop_handlers() {
  struct sigaction action {};
  action.sa_handler = record_stop_signal;
  sigemptyset(&action.sa_mask);
  // Restart interrupted system calls: MPI and HDF5 calls in flight carry on, the loop checks later.
  action.sa_flags = SA_RESTART;
  for (int signal : {SIGTERM, SIGUSR1})
    MOE_CHECK(sigaction(signal, &action, nullptr) == 0, "cannot install the handler for signal {}", signal);
}

int stop_signal_received() {
  return g_stop_signal;
}

bool stop_requested(MPI_Comm comm) {
  int stop = g_stop_signal != 0 ? 1 : 0;
  MOE_MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, &stop, 1, MPI_INT, MPI_MAX, comm));
  return stop != 0;
}

}  // namespace moe
