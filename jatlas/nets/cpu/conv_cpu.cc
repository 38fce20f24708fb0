// Direct 2-D convolution of one member on CPU (NHWC, HWIO, stride 1, valid on an
// input the caller has padded), its kernel/bias gradient and its input gradient,
// called from JAX through the XLA FFI (jatlas/nets/cpu/kernels.py builds this file).
//
// Why: XLA:CPU runs LeNet-sized convolutions (1, 6 and 16 channels) as im2col
// patch copies plus small matmuls. These loops keep the patches implicit and
// tiles of accumulators in vector registers (benchmarks/README.md has the numbers).
// A vector is a GCC vector extension of 16 floats: one AVX-512 register, or two
// AVX2 registers on machines without AVX-512 (-march=native decides).
//
// Shapes: x (N, Hp, Wp, C) padded input, w (KH, KW, C, O), b (O,), y and its
// cotangent g (N, Ho, Wo, O), Ho = Hp - KH + 1, Wo = Wp - KW + 1. K = KW * C:
// kernel row p is the (K, O) matrix w[p], and output pixel (n, i, j) reads input
// row n, i + p at the K contiguous floats from column j * C on.
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <numeric>
#include <vector>

#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

constexpr int64_t L = 16;  // floats per vector
typedef float vec __attribute__((vector_size(64)));
typedef float uvec __attribute__((vector_size(64), aligned(4)));
typedef int32_t ivec __attribute__((vector_size(64)));

inline vec load(const float* p) { return *reinterpret_cast<const uvec*>(p); }
inline void store(float* p, vec v) { *reinterpret_cast<uvec*>(p) = v; }
inline int64_t round_up(int64_t n, int64_t m) { return (n + m - 1) / m * m; }

struct Geo {
  int64_t n, hp, wp, c, kh, kw, o, ho, wo;
  int64_t k() const { return kw * c; }
  int64_t pixels() const { return n * ho * wo; }
  int64_t row() const { return wp * c; }  // floats per input row
};

// 64-byte aligned scratch (a vector load then spans one cache line) that lives as
// long as the calling (XLA worker) thread; `zero` clears it.
float* scratch(std::vector<float>& buf, int64_t size, bool zero = true) {
  if (static_cast<int64_t>(buf.size()) < size + L) buf.resize(size + L);
  float* p = buf.data();
  p += (-reinterpret_cast<uintptr_t>(p) & 63) / sizeof(float);
  if (zero) std::fill(p, p + size, 0.f);
  return p;
}

// (rows, cols) -> (rows, cols_pad) zero-padded copy, plus one vector of slack.
float* pad_cols(std::vector<float>& buf, const float* a, int64_t rows, int64_t cols,
                int64_t cols_pad) {
  float* out = scratch(buf, rows * cols_pad + L, cols_pad != cols);
  for (int64_t r = 0; r < rows; ++r) std::memcpy(out + r * cols_pad, a + r * cols, cols * 4);
  return out;
}

// Visits output pixels in order, giving each one's input offset without divisions.
struct Pixels {
  const Geo& g;
  int64_t i = 0, j = 0, base = 0;
  explicit Pixels(const Geo& geo) : g(geo) {}
  void next() {
    base += g.c;
    if (++j < g.wo) return;
    j = 0;
    base += (g.kw - 1) * g.c;  // to the next input row
    if (++i < g.ho) return;
    i = 0;
    base += (g.kh - 1) * g.row();  // to the next image
  }
};

// -------------------------------------------------- forward, channels in lanes

// JB output pixels x OB blocks of 16 output channels, accumulated in registers.
// CT > 0: the JB pixels are consecutive in one row of a C = CT input (constant
// offsets); CT = 0: any pixels, through a table of JB input offsets.
template <int JB, int OB, int CT>
void forward_tile(const float* x, const int64_t* base, const float* w_pad, const float* b_pad,
                  const Geo& g, int64_t o_pad, int64_t ob, float* y_pad) {
  const int64_t K = g.k(), rs = g.row();
  vec acc[JB][OB];
  for (int u = 0; u < OB; ++u) {
    const vec bv = load(b_pad + ob + u * L);
    for (int jj = 0; jj < JB; ++jj) acc[jj][u] = bv;
  }
  for (int64_t p = 0; p < g.kh; ++p) {
    const float* w_row = w_pad + p * K * o_pad + ob;
    if constexpr (CT > 0) {
      const float* xp = x + base[0] + p * rs;
      for (int64_t k = 0; k < K; ++k) {
        vec wv[OB];
        for (int u = 0; u < OB; ++u) wv[u] = load(w_row + k * o_pad + u * L);
        for (int jj = 0; jj < JB; ++jj)
          for (int u = 0; u < OB; ++u) acc[jj][u] += xp[jj * CT + k] * wv[u];
      }
    } else {
      const float* xs[JB];
      for (int jj = 0; jj < JB; ++jj) xs[jj] = x + base[jj] + p * rs;
      for (int64_t k = 0; k < K; ++k) {
        vec wv[OB];
        for (int u = 0; u < OB; ++u) wv[u] = load(w_row + k * o_pad + u * L);
        for (int jj = 0; jj < JB; ++jj)
          for (int u = 0; u < OB; ++u) acc[jj][u] += xs[jj][k] * wv[u];
      }
    }
  }
  for (int jj = 0; jj < JB; ++jj)
    for (int u = 0; u < OB; ++u) store(y_pad + jj * o_pad + ob + u * L, acc[jj][u]);
}

template <int JB, int OB, int CT>
void forward_channels_t(const float* x, const float* w, const float* b, const Geo& g, float* y) {
  static thread_local std::vector<float> wbuf, bbuf, ybuf;
  const int64_t o_pad = round_up(g.o, L), P = g.pixels();
  const float* w_pad = pad_cols(wbuf, w, g.kh * g.k(), g.o, o_pad);
  const float* b_pad = pad_cols(bbuf, b, 1, g.o, o_pad);
  float* y_pad = scratch(ybuf, JB * o_pad, false);
  // computes the tile whose first pixel is pix0; stores its pixels jj in [from, to)
  auto run = [&](const int64_t* base, int64_t pix0, int64_t from, int64_t to) {
    for (int64_t ob = 0; ob < o_pad; ob += OB * L)
      forward_tile<JB, OB, CT>(x, base, w_pad, b_pad, g, o_pad, ob, y_pad);
    for (int64_t jj = from; jj < to; ++jj)
      std::memcpy(y + (pix0 + jj) * g.o, y_pad + jj * o_pad, g.o * 4);
  };
  if constexpr (CT > 0) {  // row tiles; a row's last tile is shifted back to end the row
    for (int64_t r = 0; r < g.n * g.ho; ++r) {
      const int64_t n = r / g.ho, i = r % g.ho;
      for (int64_t j = 0; j < g.wo; j += JB) {
        const int64_t j0 = std::min(j, g.wo - JB), base = ((n * g.hp + i) * g.wp + j0) * g.c;
        run(&base, r * g.wo + j0, j - j0, JB);
      }
    }
  } else {
    Pixels px(g);
    int64_t base[JB];
    for (int64_t t = 0; t < P; t += JB) {
      const int64_t count = std::min<int64_t>(JB, P - t);
      for (int jj = 0; jj < JB; ++jj) {
        base[jj] = px.base;  // a short last tile repeats its last pixel
        if (jj + 1 < count) px.next();
      }
      px.next();
      run(base, t, 0, count);
    }
  }
}

void forward_channels(const float* x, const float* w, const float* b, const Geo& g, float* y) {
  const int64_t nob = round_up(g.o, L) / L;
  if (nob == 1 && g.wo >= 12 && g.c == 6) return forward_channels_t<12, 1, 6>(x, w, b, g, y);
  if (nob == 1 && g.wo >= 12 && g.c == 16) return forward_channels_t<12, 1, 16>(x, w, b, g, y);
  if (nob % 4 == 0) return forward_channels_t<6, 4, 0>(x, w, b, g, y);
  if (nob % 2 == 0) return forward_channels_t<8, 2, 0>(x, w, b, g, y);
  return forward_channels_t<8, 1, 0>(x, w, b, g, y);
}

// ---------------------------------- one input channel, <= 8 outputs: pixel pairs

// With C = 1 and O <= 8, a vector holds two neighbouring output pixels x 8 channel
// lanes (O used). Input rows are stored "paired": pair_s[16 v + l] = x[2 v + s + l / 8]
// for shifts s = 0, 1, so the input under kernel column q for output pair v is an
// aligned vector of pair_(q % 2), and kernel tap (p, q) is one constant vector. A ring
// of KH paired rows (an L1-sized window) slides down the image.
constexpr int64_t OP = 8;  // channel lanes per pixel

class PairRing {
 public:
  PairRing(const Geo& g, std::vector<float>& buf)
      : g_(g), nv((g.wo + 1) / 2), len_(round_up(g.wp * OP + 2 * L, L)) {
    ring_ = scratch(buf, 2 * g.kh * len_ + (len_ / 8 + 2 * L), false);
    row_ = ring_ + 2 * g.kh * len_;
    std::fill(row_, row_ + len_ / 8 + 2 * L, 0.f);  // zeros past the input row
    for (int64_t h = 0; h < g.hp; ++h) slot_.push_back(ring_ + (h % g.kh) * 2 * len_);
  }
  // paired rows of input row h of image n into its ring slot; one permute per vector
  void fill(const float* x, int64_t n, int64_t h) {
    const ivec two = {0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1};
    std::memcpy(row_, x + (n * g_.hp + h) * g_.wp, g_.wp * 4);
    for (int64_t s = 0; s < 2; ++s) {
      float* out = slot_[h] + s * len_;
      for (int64_t v = 0; v < len_ / L; ++v) store(out + v * L, __builtin_shuffle(load(row_ + 2 * v + s), two));
    }
  }
  void start(const float* x, int64_t n) {
    for (int64_t h = 0; h + 1 < g_.kh; ++h) fill(x, n, h);
  }
  // input under kernel column q of input row h, from output pair 0 on
  const float* at(int64_t h, int64_t q) const {
    return slot_[h] + (q & 1) * len_ + (q >> 1) * L;
  }

 private:
  const Geo& g_;

 public:
  const int64_t nv;  // output pairs per row

 private:
  int64_t len_;
  float *ring_, *row_;
  std::vector<float*> slot_;  // input row h -> its ring slot (no division per access)
};

// tap[t] = (w[t, :O], 0..., w[t, :O], 0...): kernel tap t for both pixels of a pair.
float* pair_taps(std::vector<float>& buf, const float* a, int64_t taps, int64_t o) {
  float* out = scratch(buf, taps * L);
  for (int64_t t = 0; t < taps; ++t)
    for (int64_t c = 0; c < o; ++c) out[t * L + c] = out[t * L + OP + c] = a[t * o + c];
  return out;
}

void forward_pairs(const float* x, const float* w, const float* b, const Geo& g, float* y) {
  static thread_local std::vector<float> pbuf, wbuf, bbuf, rbuf, ybuf;
  constexpr int VB = 16;
  PairRing ring(g, pbuf);
  std::vector<const float*> src(g.kh * g.kw);
  const int64_t nvb = round_up(ring.nv, VB);
  const float* taps = pair_taps(wbuf, w, g.kh * g.kw, g.o);
  const vec bias = load(pair_taps(bbuf, b, 1, g.o));
  float* row = scratch(rbuf, nvb * L, false);           // one output row, 8 lanes per pixel
  float* yrow = scratch(ybuf, g.wo * g.o + OP, false);  // ... packed, plus slack
  for (int64_t n = 0; n < g.n; ++n) {
    ring.start(x, n);
    for (int64_t i = 0; i < g.ho; ++i) {
      ring.fill(x, n, i + g.kh - 1);
      for (int64_t p = 0; p < g.kh; ++p)
        for (int64_t q = 0; q < g.kw; ++q) src[p * g.kw + q] = ring.at(i + p, q);
      for (int64_t v0 = 0; v0 < ring.nv; v0 += VB) {  // pairs past nv read the ring's slack
        vec acc[VB];
        for (int u = 0; u < VB; ++u) acc[u] = bias;
        for (int64_t t = 0; t < g.kh * g.kw; ++t) {
          const vec wv = load(taps + t * L);
          const float* s = src[t] + v0 * L;
          for (int u = 0; u < VB; ++u) acc[u] += load(s + u * L) * wv;
        }
        for (int u = 0; u < VB; ++u) store(row + (v0 + u) * L, acc[u]);
      }
      // 8 lanes per pixel, in order: each store's lanes past O are overwritten by the next
      for (int64_t j = 0; j < g.wo; ++j) std::memcpy(yrow + j * g.o, row + j * OP, OP * 4);
      std::memcpy(y + (n * g.ho + i) * g.wo * g.o, yrow, g.wo * g.o * 4);
    }
  }
}

// dw[p, q, :] = sum over pixels of x under tap (p, q) times g: per output row and
// kernel row p, KW sums (x2 for independent chains) over the row's pixel pairs.
template <int KW>
void weight_grad_pairs_t(const float* x, const float* gy, const Geo& g, float* dw) {
  static thread_local std::vector<float> pbuf, gbuf, sbuf;
  PairRing ring(g, pbuf);
  const int64_t gw = ring.nv * L;  // floats per padded cotangent row
  float* gp = scratch(gbuf, g.n * g.ho * gw);
  // 8 floats per pixel, lanes past O from the next pixel (they only reach dropped
  // lanes of the sums); the last pixel, which has no next, copies exactly O
  const int64_t rows = g.n * g.ho;
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = 0; j < g.wo; ++j) {
      const bool last = r + 1 == rows && j + 1 == g.wo;
      std::memcpy(gp + r * gw + j * OP, gy + (r * g.wo + j) * g.o, (last ? g.o : OP) * 4);
    }
  float* sums = scratch(sbuf, g.kh * KW * L);
  for (int64_t n = 0; n < g.n; ++n) {
    ring.start(x, n);
    for (int64_t i = 0; i < g.ho; ++i) {
      ring.fill(x, n, i + g.kh - 1);
      const float* gr = gp + (n * g.ho + i) * gw;
      for (int64_t p = 0; p < g.kh; ++p) {
        vec acc[2][KW] = {};
        const float* src[KW];
        for (int q = 0; q < KW; ++q) src[q] = ring.at(i + p, q);
        for (int64_t v = 0; v < ring.nv; ++v) {
          const vec gv = load(gr + v * L);
          for (int q = 0; q < KW; ++q) acc[v & 1][q] += load(src[q] + v * L) * gv;
        }
        for (int q = 0; q < KW; ++q) {
          float* s = sums + (p * KW + q) * L;
          store(s, load(s) + acc[0][q] + acc[1][q]);
        }
      }
    }
  }
  for (int64_t t = 0; t < g.kh * KW; ++t)
    for (int64_t c = 0; c < g.o; ++c) dw[t * g.o + c] = sums[t * L + c] + sums[t * L + OP + c];
}

void weight_grad_pairs(const float* x, const float* gy, const Geo& g, float* dw) {
  switch (g.kw) {
    case 1: return weight_grad_pairs_t<1>(x, gy, g, dw);
    case 2: return weight_grad_pairs_t<2>(x, gy, g, dw);
    case 3: return weight_grad_pairs_t<3>(x, gy, g, dw);
    case 4: return weight_grad_pairs_t<4>(x, gy, g, dw);
    case 5: return weight_grad_pairs_t<5>(x, gy, g, dw);
    case 6: return weight_grad_pairs_t<6>(x, gy, g, dw);
    default: return weight_grad_pairs_t<7>(x, gy, g, dw);
  }
}

// ------------------------------------------ kernel gradient, channels in lanes

// dw rows k0..k0+15 of kernel row p (rows past K are computed from the next
// pixel's floats and dropped), for output channels ob..ob+15, over all pixels.
void weight_grad_block(const float* xs, const float* g_pad, const Geo& g, int64_t o_pad,
                       int64_t p, int64_t k0, int64_t ob, float* dw_pad) {
  constexpr int KB = 16;
  vec acc[KB] = {};
  Pixels px(g);
  const float* xp0 = xs + p * g.row() + k0;
  const float* gp = g_pad + ob;
  for (int64_t pix = 0; pix < g.pixels(); ++pix, px.next(), gp += o_pad) {
    const vec gv = load(gp);
    const float* xp = xp0 + px.base;
    for (int kk = 0; kk < KB; ++kk) acc[kk] += xp[kk] * gv;
  }
  for (int kk = 0; kk < KB && k0 + kk < g.k(); ++kk)
    store(dw_pad + (p * g.k() + k0 + kk) * o_pad + ob, acc[kk]);
}

void weight_grad_channels(const float* x, const float* gy, const Geo& g, float* dw) {
  static thread_local std::vector<float> xbuf, gbuf, dwbuf;
  const int64_t o_pad = round_up(g.o, L), K = g.k(), size = g.n * g.hp * g.row();
  float* xs = scratch(xbuf, size + L, false);  // slack: the last k block reads past K
  std::memcpy(xs, x, size * 4);
  std::fill(xs + size, xs + size + L, 0.f);
  const float* g_pad = pad_cols(gbuf, gy, g.pixels(), g.o, o_pad);
  float* dw_pad = scratch(dwbuf, g.kh * K * o_pad, false);
  for (int64_t ob = 0; ob < o_pad; ob += L)
    for (int64_t p = 0; p < g.kh; ++p)
      for (int64_t k0 = 0; k0 < K; k0 += 16) weight_grad_block(xs, g_pad, g, o_pad, p, k0, ob, dw_pad);
  for (int64_t r = 0; r < g.kh * K; ++r) std::memcpy(dw + r * g.o, dw_pad + r * o_pad, g.o * 4);
}

// db[o] = sum of g over pixels: flat sums over blocks of lcm(O, 16) floats.
void bias_grad(const float* gy, const Geo& g, float* db) {
  static thread_local std::vector<float> abuf;
  const int64_t total = g.pixels() * g.o, blk = std::lcm(g.o, L);
  float* acc = scratch(abuf, blk);
  int64_t m = 0;
  for (; m + blk <= total; m += blk)
    for (int64_t k = 0; k < blk; ++k) acc[k] += gy[m + k];
  for (int64_t k = 0; m + k < total; ++k) acc[k] += gy[m + k];
  std::fill(db, db + g.o, 0.f);
  for (int64_t k = 0; k < blk; ++k) db[k % g.o] += acc[k];
}

// ---------------------------------------------------------- input gradient

// dx[pixel's input row + p, K floats from column j*C] += w[p] g[pixel]: JB pixels'
// cotangents are packed as gT[o][jj]; for each 16-float slice kb of each kernel row
// p, the JB sums over o stay in registers and are then added in place, in an order
// where consecutive adds are `stride` pixels apart and do not overlap (C < 16 packs
// several pixels into one vector).
template <int JB>
void input_grad_tile(const float* wt, const float* gT, const int64_t* base, int count,
                     const int* order, const Geo& g, int64_t k_pad, float* acc_dx) {
  for (int64_t p = 0; p < g.kh; ++p)
    for (int64_t kb = 0; kb < k_pad; kb += L) {
      vec acc[JB] = {};
      const float* w_slab = wt + p * g.o * k_pad + kb;
      for (int64_t o = 0; o < g.o; ++o) {
        const vec wv = load(w_slab + o * k_pad);
        for (int jj = 0; jj < JB; ++jj) acc[jj] += gT[o * JB + jj] * wv;
      }
      for (int u = 0; u < JB; ++u) {
        const int jj = order[u];
        if (jj >= count) continue;
        float* d = acc_dx + base[jj] + p * g.row() + kb;
        store(d, load(d) + acc[jj]);  // lanes past K add zeros: wt is zero-padded
      }
    }
}

void input_grad(const float* gy, const float* w, const Geo& g, float* dx) {
  static thread_local std::vector<float> wbuf, dbuf, tbuf;
  constexpr int JB = 16;
  const int64_t K = g.k(), k_pad = round_up(K, L), P = g.pixels();
  float* wt = scratch(wbuf, g.kh * g.o * k_pad);  // (KH, O, K_pad): w[p] transposed
  for (int64_t p = 0; p < g.kh; ++p)
    for (int64_t k = 0; k < K; ++k)
      for (int64_t o = 0; o < g.o; ++o) wt[(p * g.o + o) * k_pad + k] = w[(p * K + k) * g.o + o];
  const int64_t size = g.n * g.hp * g.row();
  float* acc_dx = scratch(dbuf, size + k_pad);  // slack for the last pixel's vector
  float* gT = scratch(tbuf, g.o * JB);
  const int stride = static_cast<int>(std::min<int64_t>(JB, (L + g.c - 1) / g.c));
  int order[JB], u = 0;
  for (int s = 0; s < stride; ++s)
    for (int jj = s; jj < JB; jj += stride) order[u++] = jj;
  Pixels px(g);
  int64_t base[JB];
  for (int64_t t = 0; t < P; t += JB) {
    const int count = static_cast<int>(std::min<int64_t>(JB, P - t));
    for (int jj = 0; jj < count; ++jj, px.next()) {
      base[jj] = px.base;
      for (int64_t o = 0; o < g.o; ++o) gT[o * JB + jj] = gy[(t + jj) * g.o + o];
    }
    for (int jj = count; jj < JB; ++jj)
      for (int64_t o = 0; o < g.o; ++o) gT[o * JB + jj] = 0.f;
    input_grad_tile<JB>(wt, gT, base, count, order, g, k_pad, acc_dx);
  }
  std::memcpy(dx, acc_dx, size * 4);
}

// ------------------------------------------------------------------ FFI

ffi::Error invalid(const char* what) {
  return ffi::Error(ffi::ErrorCode::kInvalidArgument, what);
}

// Geometry from x (N, Hp, Wp, C) and w (KH, KW, C, O) shapes; empty message if valid.
const char* geometry(ffi::Span<const int64_t> xd, ffi::Span<const int64_t> wd, Geo* g) {
  if (xd.size() != 4 || wd.size() != 4) return "jatlas conv: x and w must have rank 4";
  if (xd[3] != wd[2]) return "jatlas conv: x channels (NHWC) != w input channels (HWIO)";
  if (xd[1] < wd[0] || xd[2] < wd[1]) return "jatlas conv: kernel larger than the input";
  if (wd[1] > 7) return "jatlas conv: kernel width > 7";
  *g = Geo{xd[0], xd[1], xd[2], xd[3], wd[0], wd[1], wd[3], xd[1] - wd[0] + 1,
           xd[2] - wd[1] + 1};
  return "";
}

bool pairs_path(const Geo& g) { return g.c == 1 && g.o <= OP; }

ffi::Error Forward(ffi::Buffer<ffi::F32> x, ffi::Buffer<ffi::F32> w, ffi::Buffer<ffi::F32> b,
                   ffi::ResultBuffer<ffi::F32> y) {
  Geo g;
  if (const char* e = geometry(x.dimensions(), w.dimensions(), &g); *e) return invalid(e);
  if (pairs_path(g))
    forward_pairs(x.typed_data(), w.typed_data(), b.typed_data(), g, y->typed_data());
  else
    forward_channels(x.typed_data(), w.typed_data(), b.typed_data(), g, y->typed_data());
  return ffi::Error::Success();
}

ffi::Error WeightGrad(ffi::Buffer<ffi::F32> x, ffi::Buffer<ffi::F32> gy,
                      ffi::ResultBuffer<ffi::F32> dw, ffi::ResultBuffer<ffi::F32> db) {
  Geo g;
  if (const char* e = geometry(x.dimensions(), dw->dimensions(), &g); *e) return invalid(e);
  if (pairs_path(g))
    weight_grad_pairs(x.typed_data(), gy.typed_data(), g, dw->typed_data());
  else
    weight_grad_channels(x.typed_data(), gy.typed_data(), g, dw->typed_data());
  bias_grad(gy.typed_data(), g, db->typed_data());
  return ffi::Error::Success();
}

ffi::Error InputGrad(ffi::Buffer<ffi::F32> gy, ffi::Buffer<ffi::F32> w,
                     ffi::ResultBuffer<ffi::F32> dx) {
  Geo g;
  if (const char* e = geometry(dx->dimensions(), w.dimensions(), &g); *e) return invalid(e);
  input_grad(gy.typed_data(), w.typed_data(), g, dx->typed_data());
  return ffi::Error::Success();
}

}  // namespace

// The kernels keep tiles of 16-float vectors in registers: built without AVX-512 the
// compiler splits every vector in two and spills, and they run slower than XLA's own
// im2col lowering, so jatlas uses them only where this returns 1.
extern "C" int JatlasConvWideVectors() {
#ifdef __AVX512F__
  return 1;
#else
  return 0;
#endif
}

XLA_FFI_DEFINE_HANDLER_SYMBOL(JatlasConvForward, Forward,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>());

XLA_FFI_DEFINE_HANDLER_SYMBOL(JatlasConvWeightGrad, WeightGrad,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>());

XLA_FFI_DEFINE_HANDLER_SYMBOL(JatlasConvInputGrad, InputGrad,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>());
