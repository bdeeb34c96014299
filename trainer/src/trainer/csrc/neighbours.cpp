// A step's graph pieces (trainer.graph.neighbour_table, trainer.model.Neighbours.from_table) in
// loops: numpy takes ~1.6 ms a mini-batch step for them in a dozen passes over [m, k] arrays,
// these one pass each. The results are the numpy versions' exactly (tests/trainer/test_graph.py).
#include <cstdint>

extern "C" {

// table[i, j] = the position of index[i] - primes[j] in index, or -1 (index strictly increasing,
// primes >= 1). Being strictly increasing integers, index[i - p] <= index[i] - p, so the wanted
// zero can only sit in [i - p, i): at i - p itself where the run of zeros is contiguous (a
// step's clusters are, but at their ends), else found by a binary search there.
void zs_neighbour_table(int64_t m, const int64_t* index, int k, const int64_t* primes, int64_t* table) {
  for (int64_t i = 0; i < m; i++) {
    for (int j = 0; j < k; j++) {
      const int64_t want = index[i] - primes[j];
      if (i >= primes[j] && index[i - primes[j]] == want) {
        table[i * k + j] = i - primes[j];
        continue;
      }
      int64_t lo = i - primes[j] < 0 ? 0 : i - primes[j], hi = i;  // search [lo, hi)
      while (lo < hi) {
        const int64_t mid = lo + (hi - lo) / 2;
        if (index[mid] < want)
          lo = mid + 1;
        else
          hi = mid;
      }
      table[i * k + j] = (lo < i && index[lo] == want) ? lo : -1;
    }
  }
}

// Neighbours.from_table: index/weight (a missing neighbour points at the row itself with weight
// 0; weights 1, or 1/degree with `mean`), their transpose index_t/weight_t (edge (target,
// column) fills slot (source, column); unfilled slots point at the source with weight 0), and
// the reach (largest target - source; 0 without edges), returned.
int64_t zs_neighbours_from_table(int64_t m, int k, const int64_t* table, int mean, int32_t* index, float* weight,
                                 int32_t* index_t, float* weight_t) {
  for (int64_t s = 0; s < m; s++)
    for (int j = 0; j < k; j++) {
      index_t[s * k + j] = static_cast<int32_t>(s);
      weight_t[s * k + j] = 0.0f;
    }
  int64_t reach = 0;
  for (int64_t i = 0; i < m; i++) {
    int degree = 0;
    for (int j = 0; j < k; j++) degree += table[i * k + j] >= 0;
    const float w = mean ? 1.0f / static_cast<float>(degree > 1 ? degree : 1) : 1.0f;
    for (int j = 0; j < k; j++) {
      const int64_t src = table[i * k + j];
      if (src < 0) {
        index[i * k + j] = static_cast<int32_t>(i);
        weight[i * k + j] = 0.0f;
        continue;
      }
      index[i * k + j] = static_cast<int32_t>(src);
      weight[i * k + j] = w;
      index_t[src * k + j] = static_cast<int32_t>(i);
      weight_t[src * k + j] = w;
      if (i - src > reach) reach = i - src;
    }
  }
  return reach;
}
}
