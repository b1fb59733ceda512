// vdp-train: the built-in tasks through the library's entry point (run/run.h), which parses and
// validates the options before MPI or CUDA start and turns every error into one line and an exit
// code (README, "Exit codes and failures").
#include "vdp/run/run.h"

int main(int argc, char** argv) { return vdp::run(argc, argv); }
