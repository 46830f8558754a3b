// InfoDrop on a CPU: the self-information (patch distances, their mean and the log-sum-exp over
// offsets, in two passes with every temporary in a thread's cache) and the masks (Bernoulli, drawn and
// applied in one pass; multinomial by the alias method). Built on first use by
// timm_infodrop/layers/_cpu_build.py, called through ctypes inside torch.library ops (_cpu_kernel.py); the
// torch-ops path (info_drop_fast.py) computes the same numbers and draws masks of the same law, and the tests
// hold both to the readable reference (info_drop_reference.py). Without OpenMP (a compiler that refuses
// -fopenmp) it runs on one thread. Every parallel region runs on the thread count the caller passes
// (torch.get_num_threads()), on the OpenMP runtime the process has loaded (torch's own libgomp on Linux).
#ifdef _OPENMP
#include <omp.h>
#else
static inline int omp_get_thread_num() { return 0; }
#endif

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>

namespace {

// e^x for x <= 0 to a few ulp (Cody-Waite reduction, degree-6 Taylor polynomial on |r| <= ln2 / 2);
// branch free and without a libm call, so that the loops that call it vectorise. Below -87 it returns
// e^-87, which next to the largest term of a log-sum-exp (1) is far below float32's resolution.
inline float exp_nonpositive(float x) {
  x = std::max(x, -87.0f);
  constexpr float kRound = 12582912.0f;  // 1.5 * 2^23: adding and subtracting it rounds to an integer
  const float n = (x * 1.44269504088896341f + kRound) - kRound;
  float r = x - n * 0.693359375f;
  r = r + n * 2.12194440e-4f;
  float p = 1.0f / 720.0f;
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  const int32_t bits = (static_cast<int32_t>(n) + 127) << 23;
  return p * __builtin_bit_cast(float, bits);
}

// sum of n floats in 16 float lanes (the compiler vectorises it; a double accumulator would be one
// serial chain), the lanes added in double
inline double row_sum(const float* __restrict__ v, int64_t n) {
  float lanes[16] = {0.0f};
  int64_t j = 0;
  for (; j + 16 <= n; j += 16)
    for (int l = 0; l < 16; ++l) lanes[l] += v[j + l];
  double total = 0.0;
  for (int l = 0; l < 16; ++l) total += lanes[l];
  for (; j < n; ++j) total += v[j];
  return total;
}

struct Geometry {
  int64_t channels, height, width;     // the conv's input
  int64_t kh, kw, sh, sw, ph, pw, dh, dw;
  int64_t out_h, out_w;                // the conv's output grid
  int64_t radius;
  int64_t padded_h() const { return height + 2 * ph; }
  int64_t padded_w() const { return width + 2 * pw; }
  int64_t buffer_h() const { return padded_h() + 2 * radius; }
  int64_t buffer_w() const { return padded_w() + 2 * radius; }
};

// One sample's input, zero padded by the conv's padding plus the radius and multiplied by rescale.
void fill_padded(const float* x, const Geometry& g, float rescale, float* buffer) {
  const int64_t bh = g.buffer_h(), bw = g.buffer_w();
  const int64_t top = g.ph + g.radius, left = g.pw + g.radius;
  std::fill(buffer, buffer + g.channels * bh * bw, 0.0f);
  for (int64_t c = 0; c < g.channels; ++c) {
    for (int64_t h = 0; h < g.height; ++h) {
      const float* src = x + (c * g.height + h) * g.width;
      float* dst = buffer + (c * bh + h + top) * bw + left;
      for (int64_t w = 0; w < g.width; ++w) dst[w] = src[w] * rescale;
    }
  }
}

// row (+)= sum over N channels of (center - shifted)^2, in one pass over the row
template <int N>
inline void add_squared_differences(float* __restrict__ row, const float* const* center, const float* const* shifted,
                                    int64_t n, bool first) {
  const float* __restrict__ a[N];
  const float* __restrict__ b[N];
  for (int k = 0; k < N; ++k) a[k] = center[k], b[k] = shifted[k];
  for (int64_t w = 0; w < n; ++w) {
    float acc = first ? 0.0f : row[w];
    for (int k = 0; k < N; ++k) {
      const float diff = a[k][w] - b[k][w];
      acc += diff * diff;
    }
    row[w] = acc;
  }
}

// dst[j] = sum_a col[stride * j + a * dilation], a < taps; Stride > 0 fixes the stride at compile time, so
// that the strided loads vectorise
template <int64_t Stride>
inline void column_taps(const float* __restrict__ col, float* __restrict__ dst, int64_t n, int64_t taps,
                        int64_t dilation, int64_t stride) {
  const int64_t step = Stride > 0 ? Stride : stride;
  for (int64_t j = 0; j < n; ++j) dst[j] = col[step * j];
  for (int64_t a = 1; a < taps; ++a) {
    const float* __restrict__ src = col + a * dilation;
    for (int64_t j = 0; j < n; ++j) dst[j] += src[step * j];
  }
}

// d_o for one sample and one offset (di, dj) on the output grid; returns its sum. Scratch: `squares`
// (padded_h x padded_w) and `column_sums` (padded_w).
double offset_distance(const float* buffer, const Geometry& g, int64_t di, int64_t dj, float* squares,
                       float* column_sums, float* out) {
  const int64_t hp = g.padded_h(), wp = g.padded_w(), bh = g.buffer_h(), bw = g.buffer_w(), r = g.radius;
  // per pixel sum_c (x - shift_o x)^2 (exactly 0 where the shift sees the same value), four channels a pass
  for (int64_t h = 0; h < hp; ++h) {
    float* row = squares + h * wp;
    for (int64_t c = 0; c < g.channels; c += 4) {
      const float* center[4];
      const float* shifted[4];
      const int64_t n = std::min<int64_t>(4, g.channels - c);
      for (int64_t k = 0; k < n; ++k) {
        center[k] = buffer + ((c + k) * bh + h + r) * bw + r;
        shifted[k] = buffer + ((c + k) * bh + h + r + di) * bw + r + dj;
      }
      switch (n) {
        case 1: add_squared_differences<1>(row, center, shifted, wp, c == 0); break;
        case 2: add_squared_differences<2>(row, center, shifted, wp, c == 0); break;
        case 3: add_squared_differences<3>(row, center, shifted, wp, c == 0); break;
        default: add_squared_differences<4>(row, center, shifted, wp, c == 0); break;
      }
    }
  }
  // separable box sum: the window's rows, then its columns
  double total = 0.0;
  for (int64_t i = 0; i < g.out_h; ++i) {
    float* __restrict__ col = column_sums;
    std::copy(squares + i * g.sh * wp, squares + i * g.sh * wp + wp, col);
    for (int64_t a = 1; a < g.kh; ++a) {
      const float* __restrict__ src = squares + (i * g.sh + a * g.dh) * wp;
      for (int64_t w = 0; w < wp; ++w) col[w] += src[w];
    }
    float* __restrict__ dst = out + i * g.out_w;
    if (g.sw == 2) {
      column_taps<2>(col, dst, g.out_w, g.kw, g.dw, 2);  // a resnet stem's stride, known to the compiler
    } else {
      column_taps<0>(col, dst, g.out_w, g.kw, g.dw, g.sw);
    }
    total += row_sum(dst, g.out_w);
  }
  return total;
}

}  // namespace

// Floats of scratch that infodrop_self_information needs per thread.
extern "C" int64_t infodrop_self_information_scratch(int64_t channels, int64_t height, int64_t width, int64_t ph,
                                                     int64_t pw, int64_t radius) {
  const int64_t hp = height + 2 * ph, wp = width + 2 * pw;
  return channels * (hp + 2 * radius) * (wp + 2 * radius) + hp * wp + wp;
}

// Fills `distance` (batch x num_offsets x out_h x out_w) with d_o and `information` (batch x out_h x out_w)
// with -log q, q = mean_o exp(-d_o / (2 h^2 mean(d))), clamped at 0. `x` is (batch, channels, height,
// width), float32, contiguous; `offsets` holds (di, dj) pairs; `scratch` holds num_threads times
// infodrop_self_information_scratch(...) floats.
extern "C" void infodrop_self_information(
    const float* x, int64_t batch, int64_t channels, int64_t height, int64_t width,
    const int64_t* offsets, int64_t num_offsets, int64_t radius,
    int64_t kh, int64_t kw, int64_t sh, int64_t sw, int64_t ph, int64_t pw, int64_t dh, int64_t dw,
    int64_t out_h, int64_t out_w, float rescale, float bandwidth,
    float* distance, float* information, float* scratch, int num_threads) {
  const Geometry g{channels, height, width, kh, kw, sh, sw, ph, pw, dh, dw, out_h, out_w, radius};
  const int64_t plane = out_h * out_w;
  const int64_t tasks = batch * num_offsets;
  const int64_t per_thread = infodrop_self_information_scratch(channels, height, width, ph, pw, radius);
  double total = 0.0;
#pragma omp parallel num_threads(num_threads) reduction(+ : total)
  {
    float* buffer = scratch + omp_get_thread_num() * per_thread;
    float* squares = buffer + g.channels * g.buffer_h() * g.buffer_w();
    float* column_sums = squares + g.padded_h() * g.padded_w();
    int64_t padded_sample = -1;
    // dynamic: a thread slowed by another process on its core takes fewer tasks
#pragma omp for schedule(dynamic, 1)
    for (int64_t task = 0; task < tasks; ++task) {
      const int64_t b = task / num_offsets, o = task % num_offsets;
      if (b != padded_sample) {
        fill_padded(x + b * channels * height * width, g, rescale, buffer);
        padded_sample = b;
      }
      total += offset_distance(buffer, g, offsets[2 * o], offsets[2 * o + 1], squares, column_sums,
                               distance + task * plane);
    }
  }
  const double mean = total / static_cast<double>(tasks * plane);
  const double scale = std::max(2.0 * bandwidth * bandwidth * mean, static_cast<double>(1.17549435e-38f));
  const float inv_scale = static_cast<float>(-1.0 / scale);
  const float log_count = std::log(static_cast<float>(num_offsets));
  constexpr int64_t kBlock = 512;  // positions per task: the offsets' rows of a block stay in L1
  const int64_t blocks = (plane + kBlock - 1) / kBlock;
#pragma omp parallel num_threads(num_threads)
  {
    float top[kBlock], acc[kBlock];
#pragma omp for schedule(dynamic, 4)
    for (int64_t task = 0; task < batch * blocks; ++task) {
      const int64_t b = task / blocks, j0 = (task % blocks) * kBlock, n = std::min(kBlock, plane - j0);
      const float* d = distance + b * num_offsets * plane + j0;
      float* __restrict__ peak = top;
      float* __restrict__ sum = acc;
      for (int64_t j = 0; j < n; ++j) peak[j] = d[j] * inv_scale;
      for (int64_t o = 1; o < num_offsets; ++o) {
        const float* __restrict__ row = d + o * plane;
        for (int64_t j = 0; j < n; ++j) peak[j] = std::max(peak[j], row[j] * inv_scale);
      }
      std::fill(sum, sum + n, 0.0f);
      for (int64_t o = 0; o < num_offsets; ++o) {
        const float* __restrict__ row = d + o * plane;
        for (int64_t j = 0; j < n; ++j) sum[j] += exp_nonpositive(row[j] * inv_scale - peak[j]);
      }
      float* __restrict__ dst = information + b * plane + j0;
      for (int64_t j = 0; j < n; ++j) dst[j] = std::max(-(peak[j] + std::log(sum[j]) - log_count), 0.0f);
    }
  }
}

namespace {

// SplitMix64's output function: draw number `counter` of the stream `key` (a counter-based generator,
// so any element's draw is computed where it is needed, in any order, by any thread).
inline uint64_t draw64(uint64_t key, uint64_t counter) {
  uint64_t z = key + (counter + 1) * 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

}  // namespace

// The Bernoulli keep thresholds from a self-information map, in one pass per sample (one parallel region
// instead of a dozen small torch ops, each a barrier that waits for a descheduled thread on a loaded machine):
// logits -I / T, min-pooled with the pool's geometry (padding ignored, as max_pool2d pads with -inf); the
// softmax P over each sample's out_h x out_w positions; threshold = round(2^16 (1 - P)^m) as int32
// (m = num_draws; 65536 when m = 0). `information` (batch, height, width) and `threshold` (batch, out_h,
// out_w) contiguous; `work` holds batch * out_h * out_w floats. Returns 1 when a map holds NaN (the caller
// poisons the output: NaN in, NaN out), else 0.
extern "C" int infodrop_bernoulli_threshold(
    const float* information, int64_t batch, int64_t height, int64_t width, int64_t pool_kh, int64_t pool_kw,
    int64_t pool_sh, int64_t pool_sw, int64_t pool_ph, int64_t pool_pw, int64_t out_h, int64_t out_w,
    float temperature, int64_t num_draws, float* work, int32_t* threshold, int num_threads) {
  const int64_t positions = out_h * out_w;
  int poisoned = 0;
#pragma omp parallel for num_threads(num_threads) schedule(dynamic, 1) reduction(|| : poisoned)
  for (int64_t b = 0; b < batch; ++b) {
    const float* info = information + b * height * width;
    float* logit = work + b * positions;
    int32_t* bound = threshold + b * positions;
    bool nan = false;
    float top = -INFINITY;
    for (int64_t oh = 0; oh < out_h; ++oh) {
      const int64_t h0 = std::max<int64_t>(oh * pool_sh - pool_ph, 0);
      const int64_t h1 = std::min<int64_t>(oh * pool_sh - pool_ph + pool_kh, height);
      for (int64_t ow = 0; ow < out_w; ++ow) {
        const int64_t w0 = std::max<int64_t>(ow * pool_sw - pool_pw, 0);
        const int64_t w1 = std::min<int64_t>(ow * pool_sw - pool_pw + pool_kw, width);
        float most = -INFINITY;  // the window's largest I: its smallest logit
        for (int64_t h = h0; h < h1; ++h)
          for (int64_t w = w0; w < w1; ++w) {
            const float v = info[h * width + w];
            nan |= std::isnan(v);
            most = std::max(most, v);
          }
        const float value = -most / temperature;
        logit[oh * out_w + ow] = value;
        top = std::max(top, value);
      }
    }
    if (nan || !std::isfinite(top)) {
      poisoned = 1;
      std::fill(bound, bound + positions, 0);
      continue;
    }
    for (int64_t j = 0; j < positions; ++j) logit[j] = exp_nonpositive(logit[j] - top);
    const float inverse = static_cast<float>(1.0 / row_sum(logit, positions));
    const float draws = static_cast<float>(num_draws);
    for (int64_t j = 0; j < positions; ++j) {
      const float p = std::min(logit[j] * inverse, 1.0f);
      // log(1 - p): a short series where p is small (almost everywhere: P sums to 1), libm elsewhere
      const float log_keep = p < 0.01f ? -p * (1.0f + p * (0.5f + p * (1.0f / 3.0f + p * 0.25f)))
                                       : static_cast<float>(std::log1p(-static_cast<double>(p)));
      const float keep = num_draws == 0 ? 1.0f : exp_nonpositive(draws * log_keep);
      bound[j] = static_cast<int32_t>(std::nearbyint(keep * 65536.0f));
    }
  }
  return poisoned;
}

// out = y * keep + offset and keep (uint8, 1 = kept) for the `batch x channels x positions` elements of a
// contiguous y (memory order b, c, p; or b, p, c when channels_last): element e (in memory order) is kept
// iff its 16-bit uniform, lane e % 4 (in memory) of draw64(key, e / 4), is below threshold[b * positions + p],
// an integer in [0, 65536] (keep probability * 2^16, rounded). `offset` is 0, or NaN to poison the output
// (a non-finite input upstream), added in the same pass.
extern "C" void infodrop_bernoulli_keep(
    const float* y, float* out, uint8_t* keep, const int32_t* threshold, int64_t batch, int64_t channels,
    int64_t positions, int channels_last, uint64_t key, float offset, int num_threads) {
  const int64_t rows = channels_last ? batch * positions : batch * channels;
  const int64_t row_len = channels_last ? channels : positions;
  constexpr int64_t kBlock = 1024;  // elements whose uniforms are drawn together
#pragma omp parallel for num_threads(num_threads) schedule(dynamic, 8)
  for (int64_t row = 0; row < rows; ++row) {
    uint64_t words[kBlock / 4 + 2];
    uint16_t uniforms[kBlock + 8];
    // channels_last: one position, one threshold for the row; otherwise one per element
    const int32_t* limit = channels_last ? threshold + row : threshold + (row / channels) * positions;
    for (int64_t e0 = row * row_len; e0 < (row + 1) * row_len; e0 += kBlock) {
      const int64_t n = std::min(kBlock, (row + 1) * row_len - e0), first = e0 >> 2;
      const int64_t count = ((e0 + n - 1) >> 2) - first + 1;
      for (int64_t k = 0; k < count; ++k) words[k] = draw64(key, first + k);
      std::memcpy(uniforms, words, count * sizeof(uint64_t));
      const uint16_t* __restrict__ u = uniforms + (e0 & 3);
      const float* __restrict__ src = y + e0;
      float* __restrict__ dst = out + e0;
      uint8_t* __restrict__ flag = keep + e0;
      if (channels_last) {
        const int32_t bound = limit[0];
        for (int64_t k = 0; k < n; ++k) {
          const uint8_t kept = static_cast<int32_t>(u[k]) < bound;
          flag[k] = kept;
          dst[k] = src[k] * static_cast<float>(kept) + offset;
        }
      } else {
        const int32_t* __restrict__ bound = limit + (e0 - row * row_len);
        for (int64_t k = 0; k < n; ++k) {
          const uint8_t kept = static_cast<int32_t>(u[k]) < bound[k];
          flag[k] = kept;
          dst[k] = src[k] * static_cast<float>(kept) + offset;
        }
      }
    }
  }
}

// out = y * keep + offset, elementwise over n elements (keep uint8, 0 or 1; offset as in infodrop_bernoulli_keep).
extern "C" void infodrop_multiply_keep(const float* y, const uint8_t* keep, float* out, int64_t n, float offset,
                                       int num_threads) {
  constexpr int64_t kBlock = 1 << 16;
#pragma omp parallel for num_threads(num_threads) schedule(dynamic, 1)
  for (int64_t b0 = 0; b0 < n; b0 += kBlock) {
    const int64_t b1 = std::min(n, b0 + kBlock);
    const float* __restrict__ src = y;
    const uint8_t* __restrict__ flag = keep;
    float* __restrict__ dst = out;
    for (int64_t e = b0; e < b1; ++e) dst[e] = src[e] * static_cast<float>(flag[e]) + offset;
  }
}

// Bytes of workspace that infodrop_multinomial_keep needs.
extern "C" int64_t infodrop_multinomial_workspace(int64_t batch, int64_t positions, int num_threads) {
  return num_threads * positions * (sizeof(double) + 2 * sizeof(int32_t)) + batch * positions * 2 * sizeof(int32_t);
}

// The released multinomial law: for every (sample, channel) row, `num_draws` draws with replacement from
// the sample's distribution (batch x positions, each row summing to 1) clear `keep` (uint8, set to 1 by
// the caller; memory order as in infodrop_bernoulli_keep) at the drawn positions. Walker's alias method
// (Vose's construction in double): a draw takes a uniform column from the low 32 bits of one draw64
// and keeps it or moves to its alias by the high 32 bits, so position i is drawn with probability
// P_i to within a relative 2^-32 * positions. `workspace`: infodrop_multinomial_workspace(...) bytes,
// 8-byte aligned.
extern "C" void infodrop_multinomial_keep(
    const float* distribution, uint8_t* keep, int64_t batch, int64_t channels, int64_t positions,
    int64_t num_draws, int channels_last, uint64_t key, void* workspace, int num_threads) {
  double* scaled_all = static_cast<double*>(workspace);
  uint32_t* stay = reinterpret_cast<uint32_t*>(scaled_all + num_threads * positions);
  int32_t* alias = reinterpret_cast<int32_t*>(stay + batch * positions);
  int32_t* lists = alias + batch * positions;
#pragma omp parallel num_threads(num_threads)
  {
    const int thread = omp_get_thread_num();
    double* scaled = scaled_all + thread * positions;
    int32_t* small = lists + thread * 2 * positions;
    int32_t* large = small + positions;
#pragma omp for schedule(dynamic, 1)
    for (int64_t b = 0; b < batch; ++b) {
      const float* p = distribution + b * positions;
      double total = 0.0;
      for (int64_t i = 0; i < positions; ++i) total += p[i];
      int64_t num_small = 0, num_large = 0;
      for (int64_t i = 0; i < positions; ++i) {
        scaled[i] = p[i] * static_cast<double>(positions) / total;
        if (scaled[i] < 1.0) small[num_small++] = static_cast<int32_t>(i);
        else large[num_large++] = static_cast<int32_t>(i);
      }
      uint32_t* column_stay = stay + b * positions;
      int32_t* column_alias = alias + b * positions;
      while (num_small > 0 && num_large > 0) {
        const int32_t s = small[--num_small], l = large[num_large - 1];
        column_stay[s] = static_cast<uint32_t>(std::min(scaled[s] * 4294967296.0, 4294967295.0));
        column_alias[s] = l;
        scaled[l] -= 1.0 - scaled[s];
        if (scaled[l] < 1.0) {
          --num_large;
          small[num_small++] = l;
        }
      }
      // what is left has weight 1 up to rounding: always kept
      for (int64_t k = 0; k < num_large; ++k) column_stay[large[k]] = 4294967295u, column_alias[large[k]] = large[k];
      for (int64_t k = 0; k < num_small; ++k) column_stay[small[k]] = 4294967295u, column_alias[small[k]] = small[k];
    }
#pragma omp for schedule(dynamic, 8)
    for (int64_t row = 0; row < batch * channels; ++row) {
      const int64_t b = row / channels, c = row % channels;
      const uint32_t* column_stay = stay + b * positions;
      const int32_t* column_alias = alias + b * positions;
      uint8_t* base = keep + (channels_last ? b * positions * channels + c : row * positions);
      const int64_t step = channels_last ? channels : 1;
      const uint64_t counter = static_cast<uint64_t>(row) * static_cast<uint64_t>(num_draws);
      constexpr int64_t kBlock = 256;
      uint64_t words[kBlock];
      for (int64_t t0 = 0; t0 < num_draws; t0 += kBlock) {
        const int64_t n = std::min(kBlock, num_draws - t0);
        for (int64_t t = 0; t < n; ++t) words[t] = draw64(key, counter + t0 + t);  // vectorised
        for (int64_t t = 0; t < n; ++t) {
          const uint64_t bits = words[t];
          const int64_t column = static_cast<int64_t>(((bits & 0xFFFFFFFFull) * positions) >> 32);
          // both loads, then a select: a coin-flip branch would be mispredicted half the time
          const int64_t other = column_alias[column];
          const bool stays = static_cast<uint32_t>(bits >> 32) < column_stay[column];
          base[(stays ? column : other) * step] = 0;
        }
      }
    }
  }
}

// The exported signatures, one a line ("name(arguments) -> result"; i32 int, i64 int64_t, u64 uint64_t, f32
// float, ptr a pointer): _cpu_kernel.py refuses (and rebuilds) a library whose string differs from its ctypes
// prototypes. Change it with any signature; tests/test_cpu_kernel.py holds it to the declarations above.
extern "C" const char* infodrop_abi() {
  return "infodrop_abi() -> ptr\n"
         "infodrop_self_information_scratch(i64,i64,i64,i64,i64,i64) -> i64\n"
         "infodrop_self_information(ptr,i64,i64,i64,i64,ptr,i64,i64,i64,i64,i64,i64,i64,i64,i64,i64,i64,i64,f32,f32,"
         "ptr,ptr,ptr,i32) -> void\n"
         "infodrop_bernoulli_threshold(ptr,i64,i64,i64,i64,i64,i64,i64,i64,i64,i64,i64,f32,i64,ptr,ptr,i32) -> i32\n"
         "infodrop_bernoulli_keep(ptr,ptr,ptr,ptr,i64,i64,i64,i32,u64,f32,i32) -> void\n"
         "infodrop_multiply_keep(ptr,ptr,ptr,i64,f32,i32) -> void\n"
         "infodrop_multinomial_workspace(i64,i64,i32) -> i64\n"
         "infodrop_multinomial_keep(ptr,ptr,i64,i64,i64,i64,i32,u64,ptr,i32) -> void\n";
}
