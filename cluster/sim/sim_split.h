/* sim_split.h: ukko-sim's split-brain scenarios (sim_split.c): network
 * partitions clean, tied, one-way and flapping, and a slow network, with the
 * split-brain resolver of every node deciding. One thread. */
#ifndef UKKO_SIM_SPLIT_H
#define UKKO_SIM_SPLIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Runs the scenario if name is one of them ("split-brain", "split-tie",
 * "split-one-way", "split-reject", "split-flap", "split-flap-long", "slow";
 * "all" runs each), printing one JSON line per scenario. Returns true when
 * it ran something. */
bool sim_split_run(const char *name, size_t nodes, uint64_t seed, double loss);

#endif
