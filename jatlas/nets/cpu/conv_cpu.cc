// Direct 2-D convolution of one member on CPU (NHWC, HWIO, stride 1, valid on an
// input the caller has padded), its kernel/bias gradient and its input gradient,
// called from JAX through the XLA FFI (jatlas/nets/cpu/kernels.py builds this file).
//
// Why: XLA:CPU runs LeNet-sized convolutions (1, 6 and 16 channels) as im2col
// patch copies plus small matmuls. These loops keep the patches implicit and
// tiles of accumulators in vector registers (benchmarks/README.md has the numbers).
// A vector is a GCC vector extension of L floats, one register: L = 16 with AVX-512,
// else 8 (AVX2); -march=native decides, and each width has its own tile sizes
// (`Tiles`), sized to fill but not spill its register file (32 or 16 vectors).
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

#ifdef __AVX512F__
#define JATLAS_VEC_FLOATS 16
#else
#define JATLAS_VEC_FLOATS 8
#endif
constexpr int64_t L = JATLAS_VEC_FLOATS;  // floats per vector
typedef float vec __attribute__((vector_size(4 * JATLAS_VEC_FLOATS)));
typedef float uvec __attribute__((vector_size(4 * JATLAS_VEC_FLOATS), aligned(4)));
typedef int32_t ivec __attribute__((vector_size(4 * JATLAS_VEC_FLOATS)));

// Register tiles per vector width: accumulators plus the operands they share must
// fit the register file, else the compiler spills them and the kernels lose to XLA.
struct Tiles {
  int pair_pixels;  // forward_pairs: pixel-pair vectors accumulated at once
  int wgrad_rows;   // weight_grad_block: kernel rows accumulated at once
  int dx_pixels;    // input_grad: pixels whose input-gradient slices are summed at once
};
constexpr Tiles kTiles = L == 16 ? Tiles{16, 16, 16} : Tiles{12, 12, 12};

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
  constexpr int64_t kAlign = 64 / sizeof(float);  // floats skipped at most, to align
  if (static_cast<int64_t>(buf.size()) < size + kAlign) buf.resize(size + kAlign);
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
  explicit Pixels(const Geo& geo, int64_t image = 0) : g(geo), base(image * geo.hp * geo.row()) {}
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

// JB output pixels x OB blocks of L output channels, accumulated in registers.
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

// Tiles of JB x OB accumulators plus OB weight vectors: 12-24 of AVX-512's 32
// registers, 12-16 of AVX2's 16 (which also needs one for the broadcast input).
void forward_channels(const float* x, const float* w, const float* b, const Geo& g, float* y) {
  const int64_t nob = round_up(g.o, L) / L;
  if (nob == 1 && g.wo >= 12 && g.c == 6) return forward_channels_t<12, 1, 6>(x, w, b, g, y);
  if (nob == 1 && g.wo >= 12 && g.c == 16) return forward_channels_t<12, 1, 16>(x, w, b, g, y);
  if constexpr (L == 16) {
    if (nob % 4 == 0) return forward_channels_t<6, 4, 0>(x, w, b, g, y);
    if (nob % 2 == 0) return forward_channels_t<8, 2, 0>(x, w, b, g, y);
    return forward_channels_t<8, 1, 0>(x, w, b, g, y);
  } else {
    if (nob == 2 && g.wo >= 6 && g.c == 6) return forward_channels_t<6, 2, 6>(x, w, b, g, y);
    if (nob == 2 && g.wo >= 6 && g.c == 16) return forward_channels_t<6, 2, 16>(x, w, b, g, y);
    if (nob % 2 == 0) return forward_channels_t<6, 2, 0>(x, w, b, g, y);
    if (nob % 3 == 0) return forward_channels_t<4, 3, 0>(x, w, b, g, y);
    return forward_channels_t<12, 1, 0>(x, w, b, g, y);
  }
}

// ---------------------------------- one input channel, <= 8 outputs: pixel pairs

// With C = 1 and O <= 8, a vector holds PP = L / 8 neighbouring output pixels (two
// with AVX-512, one with AVX2) x 8 channel lanes (O used). Input rows are stored
// "paired": pair_s[L v + l] = x[PP v + s + l / 8] for shifts s < PP, so the input
// under kernel column q for output vector v is an aligned vector of pair_(q % PP),
// and kernel tap (p, q) is one constant vector. A ring of KH paired rows (an
// L1-sized window) slides down the image.
constexpr int64_t OP = 8;       // channel lanes per pixel
constexpr int64_t PP = L / OP;  // pixels per vector

class PairRing {
 public:
  PairRing(const Geo& g, std::vector<float>& buf)
      : g_(g), nv((g.wo + PP - 1) / PP), len_(round_up(g.wp * OP + 2 * L, L)) {
    // after the slots: the input row (read past its end by `fill`), then zeros for
    // forward_pairs' last tile, which reads up to a tile of vectors past a slot
    const int64_t tail = len_ / OP + 2 * L + (kTiles.pair_pixels + 1) * L;
    ring_ = scratch(buf, PP * g.kh * len_ + tail, false);
    row_ = ring_ + PP * g.kh * len_;
    std::fill(row_, row_ + tail, 0.f);
    for (int64_t h = 0; h < g.hp; ++h) slot_.push_back(ring_ + (h % g.kh) * PP * len_);
    for (int l = 0; l < L; ++l) spread_[l] = l / OP;
  }
  // paired rows of input row h of image n into its ring slot; one permute per vector
  void fill(const float* x, int64_t n, int64_t h) {
    std::memcpy(row_, x + (n * g_.hp + h) * g_.wp, g_.wp * 4);
    if constexpr (PP == 1) {  // a broadcast per pixel: cheaper than a permute
      float* out = slot_[h];
      for (int64_t v = 0; v < len_ / L; ++v) store(out + v * L, vec{} + row_[v]);
      return;
    }
    for (int64_t s = 0; s < PP; ++s) {
      float* out = slot_[h] + s * len_;
      for (int64_t v = 0; v < len_ / L; ++v)
        store(out + v * L, __builtin_shuffle(load(row_ + PP * v + s), spread_));
    }
  }
  void start(const float* x, int64_t n) {
    for (int64_t h = 0; h + 1 < g_.kh; ++h) fill(x, n, h);
  }
  // input under kernel column q of input row h, from output pair 0 on
  const float* at(int64_t h, int64_t q) const {
    return slot_[h] + (q % PP) * len_ + (q / PP) * L;
  }

 private:
  const Geo& g_;

 public:
  const int64_t nv;  // output vectors (of PP pixels) per row

 private:
  int64_t len_;
  ivec spread_;  // lane l <- pixel l / OP of the vector's PP
  float *ring_, *row_;
  std::vector<float*> slot_;  // input row h -> its ring slot (no division per access)
};

// tap[t] = (w[t, :O], 0..., w[t, :O], 0...): kernel tap t for each pixel of a vector.
float* pair_taps(std::vector<float>& buf, const float* a, int64_t taps, int64_t o) {
  float* out = scratch(buf, taps * L);
  for (int64_t t = 0; t < taps; ++t)
    for (int64_t k = 0; k < PP; ++k)
      for (int64_t c = 0; c < o; ++c) out[t * L + k * OP + c] = a[t * o + c];
  return out;
}

// KW > 0 (one pixel per vector, AVX2): the input vector under kernel column q of
// output pixel v is the one under column 0 of pixel v + q, so each is loaded once
// per kernel row and multiplied into every accumulator it reaches (VB + KW - 1
// loads for VB * KW products instead of one load each). KW = 0: any kernel width.
template <int KW>
void forward_pairs_t(const float* x, const float* w, const float* b, const Geo& g, float* y) {
  static thread_local std::vector<float> pbuf, wbuf, bbuf, rbuf, ybuf;
  constexpr int VB = KW > 0 ? 8 : kTiles.pair_pixels;  // + KW weights + 1 input <= 16
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
        if constexpr (KW > 0) {
          for (int64_t p = 0; p < g.kh; ++p) {
            const float* s = src[p * KW] + v0 * L;
            vec wq[KW];
            for (int q = 0; q < KW; ++q) wq[q] = load(taps + (p * KW + q) * L);
            for (int e = 0; e < VB + KW - 1; ++e) {
              const vec in = load(s + e * L);
              for (int q = 0; q < KW; ++q)
                if (e - q >= 0 && e - q < VB) acc[e - q] += in * wq[q];
            }
          }
        } else {
          for (int64_t t = 0; t < g.kh * g.kw; ++t) {
            const vec wv = load(taps + t * L);
            const float* s = src[t] + v0 * L;
            for (int u = 0; u < VB; ++u) acc[u] += load(s + u * L) * wv;
          }
        }
        for (int u = 0; u < VB; ++u) store(row + (v0 + u) * L, acc[u]);
      }
      // 8 lanes per pixel, in order: each store's lanes past O are overwritten by the next
      for (int64_t j = 0; j < g.wo; ++j) std::memcpy(yrow + j * g.o, row + j * OP, OP * 4);
      std::memcpy(y + (n * g.ho + i) * g.wo * g.o, yrow, g.wo * g.o * 4);
    }
  }
}

void forward_pairs(const float* x, const float* w, const float* b, const Geo& g, float* y) {
  if constexpr (PP == 1) {
    switch (g.kw) {
      case 3: return forward_pairs_t<3>(x, w, b, g, y);
      case 5: return forward_pairs_t<5>(x, w, b, g, y);
      case 7: return forward_pairs_t<7>(x, w, b, g, y);
    }
  }
  forward_pairs_t<0>(x, w, b, g, y);
}

// Output row r's cotangent as vectors of PP pixels x 8 lanes, `step` floats apart. One
// pixel per vector (AVX2): gy itself (lanes past O belong to the next pixel and reach
// only dropped lanes of the sums), the last row from a padded copy so that nothing
// reads past gy. Two (AVX-512): packed into `buf`, 8 floats per pixel.
class CotangentRows {
 public:
  CotangentRows(const float* gy, const Geo& g, int64_t nv, std::vector<float>& buf)
      : step(PP == 1 ? g.o : L), gy_(gy), rows_(g.n * g.ho), row_len_(g.wo * g.o),
        packed_len_(nv * L) {
    if constexpr (PP == 1) {
      copy_ = scratch(buf, row_len_ + OP);
      std::memcpy(copy_, gy + (rows_ - 1) * row_len_, row_len_ * 4);
      return;
    }
    copy_ = scratch(buf, rows_ * packed_len_);
    const int64_t total = rows_ * row_len_;
    for (int64_t r = 0; r < rows_; ++r)
      for (int64_t j = 0; j < g.wo; ++j) {
        const int64_t at = (r * g.wo + j) * g.o;
        float* to = copy_ + r * packed_len_ + j * OP;
        if (at + OP <= total)  // a fixed-size copy: inlined, not a call per pixel
          std::memcpy(to, gy + at, OP * 4);
        else
          std::memcpy(to, gy + at, (total - at) * 4);
      }
  }
  const float* row(int64_t r) const {
    if constexpr (PP == 1) return r + 1 < rows_ ? gy_ + r * row_len_ : copy_;
    return copy_ + r * packed_len_;
  }
  const int64_t step;

 private:
  const float* gy_;
  int64_t rows_, row_len_, packed_len_;
  float* copy_;
};

// dw[p, q, :] = sum over pixels of x under tap (p, q) times g: per output row and
// kernel row p, KW sums (x2 for independent chains) over the row's pixel pairs.
template <int KW>
void weight_grad_pairs_t(const float* x, const float* gy, const Geo& g, float* dw) {
  static thread_local std::vector<float> pbuf, gbuf, sbuf;
  PairRing ring(g, pbuf);
  const CotangentRows gr_of(gy, g, ring.nv, gbuf);
  float* sums = scratch(sbuf, g.kh * KW * L);
  for (int64_t n = 0; n < g.n; ++n) {
    ring.start(x, n);
    for (int64_t i = 0; i < g.ho; ++i) {
      ring.fill(x, n, i + g.kh - 1);
      const float* gr = gr_of.row(n * g.ho + i);
      const int64_t gs = gr_of.step;
      for (int64_t p = 0; p < g.kh; ++p) {
        vec acc[2][KW] = {};  // two chains, indexed by constants: they stay in registers
        const float* src[KW];
        for (int q = 0; q < KW; ++q) src[q] = ring.at(i + p, q);
        int64_t v = 0;
        for (; v + 1 < ring.nv; v += 2) {
          const vec g0 = load(gr + v * gs), g1 = load(gr + (v + 1) * gs);
          for (int q = 0; q < KW; ++q) {
            acc[0][q] += load(src[q] + v * L) * g0;
            acc[1][q] += load(src[q] + (v + 1) * L) * g1;
          }
        }
        if (v < ring.nv) {
          const vec gv = load(gr + v * gs);
          for (int q = 0; q < KW; ++q) acc[0][q] += load(src[q] + v * L) * gv;
        }
        for (int q = 0; q < KW; ++q) {
          float* s = sums + (p * KW + q) * L;
          store(s, load(s) + acc[0][q] + acc[1][q]);
        }
      }
    }
  }
  for (int64_t t = 0; t < g.kh * KW; ++t)
    for (int64_t c = 0; c < g.o; ++c) {
      float sum = 0.f;
      for (int64_t k = 0; k < PP; ++k) sum += sums[t * L + k * OP + c];
      dw[t * g.o + c] = sum;
    }
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

// Adds to dw rows k0..k0+KB-1 of kernel row p (rows past K are computed from the
// next pixel's floats and dropped), output channels ob..ob+L-1, the sums over the
// pixels of images [n0, n1).
template <int KB>
void weight_grad_block(const float* xs, const float* g_pad, const Geo& g, int64_t o_pad,
                       int64_t n0, int64_t n1, int64_t p, int64_t k0, int64_t ob,
                       float* dw_pad) {
  vec acc[KB] = {};
  Pixels px(g, n0);
  const float* xp0 = xs + p * g.row() + k0;
  const int64_t per_image = g.ho * g.wo;
  const float* gp = g_pad + n0 * per_image * o_pad + ob;
  for (int64_t pix = n0 * per_image; pix < n1 * per_image; ++pix, px.next(), gp += o_pad) {
    const vec gv = load(gp);
    const float* xp = xp0 + px.base;
    for (int kk = 0; kk < KB; ++kk) acc[kk] += xp[kk] * gv;
  }
  for (int kk = 0; kk < KB && k0 + kk < g.k(); ++kk) {
    float* d = dw_pad + (p * g.k() + k0 + kk) * o_pad + ob;
    store(d, load(d) + acc[kk]);
  }
}

template <int KB>
void weight_grad_channels_t(const float* x, const float* gy, const Geo& g, float* dw) {
  static thread_local std::vector<float> xbuf, gbuf, dwbuf;
  const int64_t o_pad = round_up(g.o, L), K = g.k(), size = g.n * g.hp * g.row();
  float* xs = scratch(xbuf, size + KB, false);  // slack: the last k block reads past K
  std::memcpy(xs, x, size * 4);
  std::fill(xs + size, xs + size + KB, 0.f);
  const float* g_pad = pad_cols(gbuf, gy, g.pixels(), g.o, o_pad);
  float* dw_pad = scratch(dwbuf, g.kh * K * o_pad);
  // every block sweeps a chunk of images (their x and g stay in cache) before the next
  // chunk; >= 128 pixels per chunk keeps the accumulator reloads rare
  const int64_t step = std::max<int64_t>(1, 128 / std::max<int64_t>(1, g.ho * g.wo));
  for (int64_t n0 = 0; n0 < g.n; n0 += step)
    for (int64_t ob = 0; ob < o_pad; ob += L)
      for (int64_t p = 0; p < g.kh; ++p)
        for (int64_t k0 = 0; k0 < K; k0 += KB)
          weight_grad_block<KB>(xs, g_pad, g, o_pad, n0, std::min(g.n, n0 + step), p, k0, ob,
                                dw_pad);
  for (int64_t r = 0; r < g.kh * K; ++r) std::memcpy(dw + r * g.o, dw_pad + r * o_pad, g.o * 4);
}

// Row blocks of at most kTiles.wgrad_rows; with AVX2 the size that wastes the
// fewest rows past K (K = 30: 3 x 10 rather than 3 x 12).
void weight_grad_channels(const float* x, const float* gy, const Geo& g, float* dw) {
  if constexpr (L == 16) {
    weight_grad_channels_t<kTiles.wgrad_rows>(x, gy, g, dw);
  } else {
    const auto padded = [&](int64_t kb) { return round_up(g.k(), kb); };
    constexpr int most = kTiles.wgrad_rows;  // 12
    if (padded(10) < padded(most) && padded(10) <= padded(8))
      return weight_grad_channels_t<10>(x, gy, g, dw);
    if (padded(8) < padded(most)) return weight_grad_channels_t<8>(x, gy, g, dw);
    weight_grad_channels_t<kTiles.wgrad_rows>(x, gy, g, dw);
  }
}

// db[o] = sum of g over pixels: flat sums over blocks of lcm(O, L) floats.
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
// cotangents are packed as gT[o][jj]; for each L-float slice kb of each kernel row
// p, the JB sums over o stay in registers and are then added in place. The JB
// pixels are `stride` apart, so their slices do not overlap (C < L packs several
// pixels into one vector): a load never waits on a partly overlapping store still
// in flight, which the CPU cannot forward.
template <int JB>
void input_grad_tile(const float* wt, const float* gT, const int64_t* base, int count,
                     const Geo& g, int64_t k_pad, float* acc_dx) {
  for (int64_t p = 0; p < g.kh; ++p)
    for (int64_t kb = 0; kb < k_pad; kb += L) {
      vec acc[JB] = {};
      const float* w_slab = wt + p * g.o * k_pad + kb;
      for (int64_t o = 0; o < g.o; ++o) {
        const vec wv = load(w_slab + o * k_pad);
        for (int jj = 0; jj < JB; ++jj) acc[jj] += gT[o * JB + jj] * wv;
      }
      for (int jj = 0; jj < count; ++jj) {
        float* d = acc_dx + base[jj] + p * g.row() + kb;
        store(d, load(d) + acc[jj]);  // lanes past K add zeros: wt is zero-padded
      }
    }
}

void input_grad(const float* gy, const float* w, const Geo& g, float* dx) {
  static thread_local std::vector<float> wbuf, dbuf, tbuf;
  constexpr int JB = kTiles.dx_pixels;
  const int64_t K = g.k(), k_pad = round_up(K, L), P = g.pixels();
  float* wt = scratch(wbuf, g.kh * g.o * k_pad);  // (KH, O, K_pad): w[p] transposed
  for (int64_t p = 0; p < g.kh; ++p)
    for (int64_t k = 0; k < K; ++k)
      for (int64_t o = 0; o < g.o; ++o) wt[(p * g.o + o) * k_pad + k] = w[(p * K + k) * g.o + o];
  const int64_t size = g.n * g.hp * g.row();
  float* acc_dx = scratch(dbuf, size + k_pad);  // slack for the last pixel's vector
  float* gT = scratch(tbuf, g.o * JB);
  // chunks of stride * JB consecutive pixels, as `stride` tiles of every stride-th one
  const int stride = static_cast<int>((L + g.c - 1) / g.c);
  std::vector<int64_t> chunk(stride * JB);
  int64_t base[JB];
  Pixels px(g);
  for (int64_t t = 0; t < P; t += stride * JB) {
    const int64_t in_chunk = std::min<int64_t>(stride * JB, P - t);
    for (int64_t m = 0; m < in_chunk; ++m, px.next()) chunk[m] = px.base;
    for (int r = 0; r < stride && r < in_chunk; ++r) {
      const int count = static_cast<int>((in_chunk - r + stride - 1) / stride);
      for (int jj = 0; jj < JB; ++jj) {  // pixels past the chunk get zero cotangents
        if (jj < count) base[jj] = chunk[r + jj * stride];
        const float* gp = jj < count ? gy + (t + r + jj * stride) * g.o : nullptr;
        for (int64_t o = 0; o < g.o; ++o) gT[o * JB + jj] = gp ? gp[o] : 0.f;
      }
      input_grad_tile<JB>(wt, gT, base, count, g, k_pad, acc_dx);
    }
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

// Floats per vector the tiles were sized for (16: AVX-512, 8: AVX2 with FMA); 0 where
// the compiler targets neither, and the vectors it emits run slower than XLA's own
// im2col lowering, so jatlas uses the kernels only where this is nonzero.
extern "C" int JatlasConvVectorFloats() {
#if defined(__AVX512F__) || (defined(__AVX2__) && defined(__FMA__))
  return L;
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
