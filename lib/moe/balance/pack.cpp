#include "moe/balance/pack.hpp"

#include <algorithm>
#include <numeric>

#include "core/error.hpp"

namespace moe::balance {
namespace {

struct Bins {
  std::vector<double> load;
  std::vector<std::vector<int>> items;  // item indices per bin

  bool holds_key(int bin, int key, const std::vector<PackItem>& all) const {
    const auto& in = items[static_cast<std::size_t>(bin)];
    return std::any_of(in.begin(), in.end(), [&](int i) { return all[static_cast<std::size_t>(i)].key == key; });
  }
  void put(int bin, int item, const std::vector<PackItem>& all) {
    items[static_cast<std::size_t>(bin)].push_back(item);
    load[static_cast<std::size_t>(bin)] += all[static_cast<std::size_t>(item)].load;
  }
  void take(int bin, int item, const std::vector<PackItem>& all) {
    auto& in = items[static_cast<std::size_t>(bin)];
    in.erase(std::find(in.begin(), in.end(), item));
    load[static_cast<std::size_t>(bin)] -= all[static_cast<std::size_t>(item)].load;
  }
};

// Local search after the greedy pass: move an item out of the most loaded bin, or swap it with a
// lighter item of another bin, when that lowers the larger of the two bins' loads below the
// maximum; repeat while something improves. Every step lowers the sorted load vector
// lexicographically, so it ends; the cap only bounds the time.
void refine(Bins& state, const std::vector<PackItem>& all, int capacity) {
  const auto bins = static_cast<int>(state.load.size());
  const auto load_of = [&](int i) { return all[static_cast<std::size_t>(i)].load; };
  for (int step = 0; step < 10000; ++step) {
    const int top = static_cast<int>(std::max_element(state.load.begin(), state.load.end()) - state.load.begin());
    const double top_load = state.load[static_cast<std::size_t>(top)];
    double best = top_load * (1 - 1e-12);
    int best_bin = -1, best_out = -1, best_in = -1;  // best_in < 0: a move
    for (int b = 0; b < bins; ++b) {
      if (b == top) continue;
      const double other = state.load[static_cast<std::size_t>(b)];
      const bool room = static_cast<int>(state.items[static_cast<std::size_t>(b)].size()) < capacity;
      for (int i : state.items[static_cast<std::size_t>(top)]) {
        if (state.holds_key(b, all[static_cast<std::size_t>(i)].key, all)) continue;
        if (room && std::max(top_load - load_of(i), other + load_of(i)) < best) {
          best = std::max(top_load - load_of(i), other + load_of(i));
          best_bin = b, best_out = i, best_in = -1;
        }
        for (int j : state.items[static_cast<std::size_t>(b)]) {
          const double d = load_of(i) - load_of(j);
          if (d <= 0 || std::max(top_load - d, other + d) >= best) continue;
          if (state.holds_key(top, all[static_cast<std::size_t>(j)].key, all)) continue;
          best = std::max(top_load - d, other + d);
          best_bin = b, best_out = i, best_in = j;
        }
      }
    }
    if (best_bin < 0) return;
    state.take(top, best_out, all);
    state.put(best_bin, best_out, all);
    if (best_in >= 0) {
      state.take(best_bin, best_in, all);
      state.put(top, best_in, all);
    }
  }
}

}  // namespace

std::vector<int> balanced_pack(const std::vector<PackItem>& items, int bins, int capacity) {
  MOE_CHECK(bins > 0 && capacity >= 0, "balanced packing: {} bins of capacity {}", bins, capacity);
  MOE_CHECK(static_cast<int64_t>(items.size()) <= static_cast<int64_t>(bins) * capacity,
            "balanced packing: {} items do not fit {} bins of {}", items.size(), bins, capacity);
  std::vector<int> order(items.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int a, int b) {
    return items[static_cast<std::size_t>(a)].load > items[static_cast<std::size_t>(b)].load;
  });
  Bins state{std::vector<double>(static_cast<std::size_t>(bins), 0.0),
             std::vector<std::vector<int>>(static_cast<std::size_t>(bins))};
  const auto has_room = [&](int bin) {
    return static_cast<int>(state.items[static_cast<std::size_t>(bin)].size()) < capacity;
  };
  // Least loaded first, then fewest items (so zero-load items still spread over the bins).
  const auto lighter = [&](int a, int b) {
    const auto ua = static_cast<std::size_t>(a), ub = static_cast<std::size_t>(b);
    return state.load[ua] < state.load[ub] ||
           (state.load[ua] == state.load[ub] && state.items[ua].size() < state.items[ub].size());
  };
  for (int item : order) {
    const int key = items[static_cast<std::size_t>(item)].key;
    int best = -1;
    for (int b = 0; b < bins; ++b)
      if (has_room(b) && !state.holds_key(b, key, items) && (best < 0 || lighter(b, best))) best = b;
    if (best < 0) {
      // Every bin with room already holds this key. Take the least-loaded such bin `open` and a
      // full bin `full` without the key; `full` holds `capacity` distinct keys and `open` at most
      // capacity - 1 including this one, so some item of `full` can move to `open`, freeing a
      // place for this item.
      int open = -1;
      for (int b = 0; b < bins; ++b)
        if (has_room(b) &&
            (open < 0 || state.load[static_cast<std::size_t>(b)] < state.load[static_cast<std::size_t>(open)]))
          open = b;
      int full = -1, moved = -1;
      for (int b = 0; b < bins && full < 0; ++b) {
        if (b == open || state.holds_key(b, key, items)) continue;
        for (int j : state.items[static_cast<std::size_t>(b)])
          if (!state.holds_key(open, items[static_cast<std::size_t>(j)].key, items)) {
            full = b;
            moved = j;
            break;
          }
      }
      MOE_CHECK(open >= 0 && full >= 0, "balanced packing: no bin can take a {} item with key {}",
                items[static_cast<std::size_t>(item)].load, key);
      state.take(full, moved, items);
      state.put(open, moved, items);
      best = full;
    }
    state.put(best, item, items);
  }
  refine(state, items, capacity);
  std::vector<int> bin_of(items.size(), -1);
  for (int b = 0; b < bins; ++b)
    for (int i : state.items[static_cast<std::size_t>(b)]) bin_of[static_cast<std::size_t>(i)] = b;
  return bin_of;
}

}  // namespace moe::balance
