// The CPU conv kernels (jatlas/nets/cpu/conv_cpu.cc) on LeNet-5's three convolutions at
// batch 128, one member, outside JAX: best-of-30 milliseconds and GFLOP/s per kernel,
// and the forward's largest difference from a direct loop (the per-kernel figures in
// benchmarks/README.md). Build and run pinned to one core:
//
//   g++ -O3 -march=native -std=c++17 -I"$(python3 -c 'import jax; print(jax.ffi.include_dir())')" \
//     benchmarks/conv_kernels.cc -o /tmp/conv_kernels && taskset -c 0 /tmp/conv_kernels
//
// Add -fsanitize=address -O1 -g to check the kernels' memory accesses instead.
#include "../jatlas/nets/cpu/conv_cpu.cc"

#include <chrono>
#include <cmath>
#include <cstdio>
#include <random>

namespace {

template <class F>
double best_ms(F f, int reps = 30) {
  double best = 1e9;
  for (int r = 0; r < reps; ++r) {
    const auto t = std::chrono::steady_clock::now();
    f();
    best = std::min(best, std::chrono::duration<double, std::milli>(
                              std::chrono::steady_clock::now() - t).count());
  }
  return best;
}

double forward_error(const std::vector<float>& x, const std::vector<float>& w,
                     const std::vector<float>& b, const Geo& g, const std::vector<float>& y) {
  double err = 0;
  for (int64_t n = 0; n < g.n; ++n)
    for (int64_t i = 0; i < g.ho; ++i)
      for (int64_t j = 0; j < g.wo; ++j)
        for (int64_t o = 0; o < g.o; ++o) {
          double r = b[o];
          for (int64_t p = 0; p < g.kh; ++p)
            for (int64_t q = 0; q < g.kw; ++q)
              for (int64_t c = 0; c < g.c; ++c)
                r += x[((n * g.hp + i + p) * g.wp + j + q) * g.c + c] *
                     w[((p * g.kw + q) * g.c + c) * g.o + o];
          err = std::max(err, std::abs(r - y[((n * g.ho + i) * g.wo + j) * g.o + o]));
        }
  return err;
}

}  // namespace

int main() {
  struct Shape { const char* name; int64_t n, hp, wp, c, kh, kw, o; };
  const Shape shapes[] = {{"conv1", 128, 36, 36, 1, 5, 5, 6},
                          {"conv2", 128, 16, 16, 6, 5, 5, 16},
                          {"conv3", 128, 6, 6, 16, 5, 5, 120}};
  std::mt19937 rng(0);
  std::normal_distribution<float> normal;
  std::printf("vector floats %d\n", JatlasConvVectorFloats());
  for (const Shape& s : shapes) {
    const Geo g{s.n, s.hp, s.wp, s.c, s.kh, s.kw, s.o, s.hp - s.kh + 1, s.wp - s.kw + 1};
    std::vector<float> x(g.n * g.hp * g.row()), w(g.kh * g.k() * g.o), b(g.o),
        y(g.pixels() * g.o), gy(y.size()), dw(w.size()), db(g.o), dx(x.size());
    for (auto* v : {&x, &w, &b, &gy})
      for (float& a : *v) a = normal(rng);
    const double mflop = 2.0 * g.pixels() * g.kh * g.k() * g.o / 1e6;
    const bool pairs = pairs_path(g);
    const double f = best_ms([&] {
      if (pairs) forward_pairs(x.data(), w.data(), b.data(), g, y.data());
      else forward_channels(x.data(), w.data(), b.data(), g, y.data());
    });
    const double wg = best_ms([&] {
      if (pairs) weight_grad_pairs(x.data(), gy.data(), g, dw.data());
      else weight_grad_channels(x.data(), gy.data(), g, dw.data());
    });
    const double bg = best_ms([&] { bias_grad(gy.data(), g, db.data()); });
    const double ig = best_ms([&] { input_grad(gy.data(), w.data(), g, dx.data()); });
    std::printf("%s  forward %.3f ms (%.0f GFLOP/s, max err %.1e)  weight grad %.3f (%.0f)  "
                "bias grad %.3f  input grad %.3f (%.0f)\n", s.name, f, mflop / f,
                forward_error(x, w, b, g, y), wg, mflop / wg, bg, ig, mflop / ig);
  }
}
