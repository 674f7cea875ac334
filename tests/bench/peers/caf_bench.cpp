// caf_bench: bench-actors' workloads on CAF 0.17 (Debian libcaf-dev), the
// same way ukko runs them: flood (one sender actor sending batches of 1000
// to one receiver, then messaging itself to go on) and ping-pong (P pairs).
// Usage: caf_bench N P M   Prints one JSON line.
#include <chrono>
#include <cstdio>
#include <cstdlib>

#include "caf/all.hpp"

using namespace caf;
using go_atom = atom_constant<atom("go")>;
using done_atom = atom_constant<atom("done")>;
using ping_atom = atom_constant<atom("ping")>;

namespace {

constexpr int64_t batch = 1000;

// Counters live in each actor's own state (no sharing between threads).
struct count_state {
  int64_t n = 0;
};

behavior receiver(stateful_actor<count_state>* self, actor main_, int64_t n) {
  return {[=](int64_t) {
    if (++self->state.n == n)
      self->send(main_, done_atom::value);
  }};
}

behavior sender(stateful_actor<count_state>* self, actor to, int64_t n) {
  return {[=](go_atom) {
    int64_t end = std::min(self->state.n + batch, n);
    for (; self->state.n < end; ++self->state.n)
      self->send(to, self->state.n);
    if (self->state.n < n)
      self->send(self, go_atom::value);
  }};
}

behavior server(event_based_actor* self) {
  return {[=](ping_atom, int64_t v, actor peer) {
    self->send(peer, ping_atom::value, v, actor_cast<actor>(self));
  }};
}

behavior client(stateful_actor<count_state>* self, actor peer, actor main_, int64_t m) {
  self->state.n = m;
  return {
    [=](go_atom) { self->send(peer, ping_atom::value, int64_t{0}, actor_cast<actor>(self)); },
    [=](ping_atom, int64_t v, actor) {
      if (--self->state.n == 0) {
        self->send(main_, done_atom::value);
        return;
      }
      self->send(peer, ping_atom::value, v, actor_cast<actor>(self));
    }};
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

} // namespace

int main(int argc, char** argv) {
  int64_t n = argc > 1 ? std::atoll(argv[1]) : 10000000;
  int pairs = argc > 2 ? std::atoi(argv[2]) : 4;
  int64_t m = argc > 3 ? std::atoll(argv[3]) : 250000;
  actor_system_config cfg;
  actor_system sys{cfg};
  scoped_actor self{sys};

  auto r = sys.spawn(receiver, actor{self}, n);
  auto s = sys.spawn(sender, r, n);
  auto t0 = std::chrono::steady_clock::now();
  self->send(s, go_atom::value);
  self->receive([](done_atom) {});
  double flood = n / seconds_since(t0);
  self->send_exit(s, exit_reason::user_shutdown);
  self->send_exit(r, exit_reason::user_shutdown);

  std::vector<actor> clients;
  std::vector<actor> servers;
  for (int i = 0; i < pairs; ++i) {
    servers.push_back(sys.spawn(server));
    clients.push_back(sys.spawn(client, servers.back(), actor{self}, m));
  }
  t0 = std::chrono::steady_clock::now();
  for (auto& c : clients)
    self->send(c, go_atom::value);
  for (int i = 0; i < pairs; ++i)
    self->receive([](done_atom) {});
  double rt = pairs * double(m) / seconds_since(t0);
  for (auto& a : clients)
    self->send_exit(a, exit_reason::user_shutdown);
  for (auto& a : servers)
    self->send_exit(a, exit_reason::user_shutdown);
  std::printf("{\"flood_msgs_per_s\":%.0f,\"roundtrips_per_s\":%.0f}\n", flood, rt);
  return 0;
}
