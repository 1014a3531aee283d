// CPU stand-ins for the cuFFT functions blfft's CUDA backend calls; semantics and what is checked:
// standin_cufft.hpp. Compiled against the real cufft.h (from the nvidia-cufft wheel or a CUDA
// toolkit), so every definition below has cuFFT's exact signature; linked instead of libcufft into
// the emulation tests.

#include "standin_cufft.hpp"

#include <algorithm>
#include <array>
#include <cmath>
#include <complex>
#include <cstring>
#include <limits>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "standin_runtime.hpp"
#include "traffic.hpp"  // cuda/: operands' footprints for the emulation's traffic counts

namespace {

using cplx = std::complex<double>;
using blfft_standin::cufft_plan_info;

struct plan_state {
  cufft_plan_info info;
  std::vector<unsigned char> own_work;  // the work area when auto-allocation is on
};

std::mutex g_mutex;  // every stand-in call runs under it
std::map<cufftHandle, plan_state> g_plans;
cufftHandle g_next_handle = 1;
blfft_standin::cufft_counters g_stats;
thread_local std::string g_last_error;

cufftResult failed(cufftResult r, const std::string& why) {
  g_last_error = why;
  ++g_stats.failed;
  return r;
}

bool is_double(cufftType t) {
  return t == CUFFT_D2Z || t == CUFFT_Z2D || t == CUFFT_Z2Z;
}
bool real_input(cufftType t) {
  return t == CUFFT_R2C || t == CUFFT_D2Z;
}
bool real_output(cufftType t) {
  return t == CUFFT_C2R || t == CUFFT_Z2D;
}
bool known_type(cufftType t) {
  return t == CUFFT_R2C || t == CUFFT_C2R || t == CUFFT_C2C || t == CUFFT_D2Z || t == CUFFT_Z2D ||
         t == CUFFT_Z2Z;
}

/// Where the elements of one side (input or output) of a plan are.
struct layout {
  int rank = 1;
  std::array<long long, 3> dims{1, 1, 1};   // logical extent along each axis
  std::array<long long, 3> embed{1, 1, 1};  // storage extent (entries 1.. used)
  long long stride = 1, dist = 1, batch = 1;
  bool real = false;

  long long count() const { return dims[0] * dims[1] * dims[2]; }
  /// Offset, in elements, of logical element i (row-major over dims) of transform b.
  long long offset(long long b, long long i) const {
    std::array<long long, 3> x{0, 0, 0};
    for (int a = rank - 1; a >= 0; --a) {
      x[a] = i % dims[a];
      i /= dims[a];
    }
    long long lin = x[0];
    for (int a = 1; a < rank; ++a) lin = lin * embed[a] + x[a];
    return b * dist + lin * stride;
  }
  long long extent() const {  // elements from the first to one past the last addressed
    return offset(batch - 1, count() - 1) + 1;
  }
};

layout side_layout(const cufft_plan_info& p, bool input, bool in_place) {
  layout l;
  l.rank = p.rank;
  l.batch = p.batch;
  l.real = input ? real_input(p.type) : real_output(p.type);
  const bool halved = input ? real_output(p.type) : real_input(p.type);
  for (int a = 0; a < p.rank; ++a) l.dims[a] = p.n[a];
  if (halved) l.dims[p.rank - 1] = p.n[p.rank - 1] / 2 + 1;
  if (p.advanced) {
    const auto& e = input ? p.inembed : p.onembed;
    for (int a = 0; a < p.rank; ++a) l.embed[a] = e[a];
    l.stride = input ? p.istride : p.ostride;
    l.dist = input ? p.idist : p.odist;
  } else {
    // Basic layout: dense, except that an in-place real array is padded along the last axis to
    // the complex array's size (2 * (n/2 + 1) reals).
    for (int a = 0; a < p.rank; ++a) l.embed[a] = l.dims[a];
    if (in_place && (real_input(p.type) || real_output(p.type)) && l.real)
      l.embed[p.rank - 1] = 2 * (p.n[p.rank - 1] / 2 + 1);
    l.stride = 1;
    l.dist = 1;
    for (int a = 0; a < p.rank; ++a) l.dist *= l.embed[a];
  }
  return l;
}

/// out[k] = sum_j in[j * stride] w^(j k) for k < n, w = tw[N / n] (tw: the N-th roots of unity
/// in the transform's direction, n divides N). Mixed-radix Cooley-Tukey on the smallest prime
/// factor (the grids are 7-smooth), a plain O(n^2) sum for a prime n: in double precision,
/// written for clarity, not speed, yet fast enough for the traffic tool's 500-sample signals.
void line_dft(const cplx* in, long long stride, cplx* out, long long n, const std::vector<cplx>& tw,
              std::vector<cplx>& scratch) {
  const auto N = static_cast<long long>(tw.size());
  const long long step = N / n;  // w_n^j = tw[j * step]
  long long p = 2;
  while (p * p <= n && n % p != 0) ++p;
  if (p * p > n) p = n;  // prime (or 1)
  if (p == n) {
    for (long long k = 0; k < n; ++k) {
      cplx s = 0;
      for (long long j = 0; j < n; ++j) s += in[j * stride] * tw[((j * k) % n) * step];
      out[k] = s;
    }
    return;
  }
  const long long m = n / p;
  // p interleaved sub-sequences, each transformed into out[r * m, r * m + m).
  for (long long r = 0; r < p; ++r)
    line_dft(in + r * stride, stride * p, out + r * m, m, tw, scratch);
  // Butterflies: X[k + q m] = sum_r w_n^(r (k + q m)) Y_r[k].
  const size_t base = scratch.size();
  scratch.resize(base + static_cast<size_t>(n));
  for (long long k = 0; k < m; ++k)
    for (long long q = 0; q < p; ++q) {
      cplx s = 0;
      for (long long r = 0; r < p; ++r) s += out[r * m + k] * tw[((r * (k + q * m)) % n) * step];
      scratch[base + static_cast<size_t>(k + q * m)] = s;
    }
  std::copy(scratch.begin() + static_cast<std::ptrdiff_t>(base), scratch.end(), out);
  scratch.resize(base);
}

/// Unnormalised DFT of `v` (row-major, dims n) along every axis; sign -1 forward, +1 inverse.
void dft(std::vector<cplx>& v, long long off, const cufft_plan_info& p, int sign) {
  std::array<long long, 3> n{1, 1, 1};
  for (int a = 0; a < p.rank; ++a) n[a] = p.n[a];
  const long long total = n[0] * n[1] * n[2];
  std::vector<cplx> line, res, scratch;
  for (int a = 0; a < p.rank; ++a) {
    const long long len = n[a];
    long long step = 1;
    for (int b = a + 1; b < p.rank; ++b) step *= n[b];
    std::vector<cplx> tw(static_cast<size_t>(len));
    for (long long j = 0; j < len; ++j) {
      const double t = sign * 2.0 * M_PI * static_cast<double>(j) / static_cast<double>(len);
      tw[static_cast<size_t>(j)] = cplx(std::cos(t), std::sin(t));
    }
    line.assign(static_cast<size_t>(len), 0);
    res.assign(static_cast<size_t>(len), 0);
    for (long long start = 0; start < total; ++start) {
      if ((start / step) % len != 0) continue;  // first element of each line along axis a
      for (long long j = 0; j < len; ++j) line[j] = v[off + start + j * step];
      line_dft(line.data(), 1, res.data(), len, tw, scratch);
      for (long long k = 0; k < len; ++k) v[off + start + k * step] = res[k];
    }
  }
}

template <class T>
cufftResult execute(cufftHandle h, cufftType expected, void* idata, void* odata, int direction) {
  std::lock_guard<std::mutex> lock(g_mutex);
  ++g_stats.exec;
  auto it = g_plans.find(h);
  if (it == g_plans.end() || !it->second.info.made)
    return failed(CUFFT_INVALID_PLAN, "exec: not a handle with a made plan");
  plan_state& ps = it->second;
  cufft_plan_info& p = ps.info;
  if (p.type != expected)
    return failed(CUFFT_INVALID_TYPE, "exec: the plan's type does not match the exec function");
  if (idata == nullptr || odata == nullptr)
    return failed(CUFFT_INVALID_VALUE, "exec: null data pointer");
  if ((expected == CUFFT_C2C || expected == CUFFT_Z2Z) && direction != CUFFT_FORWARD &&
      direction != CUFFT_INVERSE)
    return failed(CUFFT_INVALID_VALUE,
                  "exec: direction is neither CUFFT_FORWARD nor CUFFT_INVERSE");
  if (blfft_standin::current_device() != p.device)
    return failed(CUFFT_INVALID_DEVICE,
                  "exec: the plan was made on device " + std::to_string(p.device) + " but device " +
                      std::to_string(blfft_standin::current_device()) + " is current");
  const int sdev = blfft_standin::stream_device(p.stream);
  if (sdev >= 0 && sdev != p.device)
    return failed(CUFFT_INVALID_VALUE, "exec: the plan's stream belongs to device " +
                                           std::to_string(sdev) + ", the plan to device " +
                                           std::to_string(p.device));
  void* work = p.auto_allocation ? static_cast<void*>(ps.own_work.data()) : p.work_area;
  if (p.work_size > 0 && work == nullptr)
    return failed(CUFFT_NO_WORKSPACE, "exec: auto-allocation is off and no work area was set");

  const bool in_place = idata == odata;
  const layout in = side_layout(p, true, in_place), out = side_layout(p, false, in_place);
  const std::size_t in_elem = in.real ? sizeof(T) : 2 * sizeof(T);
  const std::size_t out_elem = out.real ? sizeof(T) : 2 * sizeof(T);
  if (!in_place) {
    const auto ib = reinterpret_cast<uintptr_t>(idata), ob = reinterpret_cast<uintptr_t>(odata);
    const auto ie = ib + static_cast<uintptr_t>(in.extent()) * in_elem;
    const auto oe = ob + static_cast<uintptr_t>(out.extent()) * out_elem;
    if (ib < oe && ob < ie)
      return failed(CUFFT_INVALID_VALUE, "exec: out-of-place input and output overlap");
  }

  T* ri = static_cast<T*>(idata);
  T* ro = static_cast<T*>(odata);
  // Traffic: each input element read once, each output element written once (what a single-pass
  // cuFFT kernel moves; the work area and multi-pass plans are not counted).
  auto* const meter = blfft::cuda::detail::current_traffic_recorder();
  const auto note = [meter](bool write, const T* at, std::size_t bytes) {
    if (!meter) return;
    if (write)
      meter->write(at, bytes);
    else
      meter->read(at, bytes);
  };
  long long full = 1;
  for (int a = 0; a < p.rank; ++a) full *= p.n[a];
  std::vector<cplx> v(static_cast<size_t>(full * p.batch));
  const double tiny = std::numeric_limits<double>::min();
  // 1. read every input element (all transforms) before anything is written
  std::vector<cplx> half;
  for (long long b = 0; b < p.batch; ++b) {
    const long long base = b * full;
    if (in.real) {
      for (long long i = 0; i < in.count(); ++i) {
        note(false, ri + in.offset(b, i), sizeof(T));
        v[base + i] = ri[in.offset(b, i)];
      }
    } else if (!real_output(p.type)) {
      for (long long i = 0; i < in.count(); ++i) {
        const long long o = 2 * in.offset(b, i);
        note(false, ri + o, 2 * sizeof(T));
        v[base + i] = cplx(ri[o], ri[o + 1]);
      }
    } else {
      // C2R: the half spectrum, completed by Hermitian symmetry along the last axis.
      half.assign(static_cast<size_t>(in.count()), 0);
      double peak = tiny;
      for (long long i = 0; i < in.count(); ++i) {
        const long long o = 2 * in.offset(b, i);
        note(false, ri + o, 2 * sizeof(T));
        half[i] = cplx(ri[o], ri[o + 1]);
        peak = std::max(peak, std::abs(half[i]));
      }
      std::array<long long, 3> n{1, 1, 1}, hd{1, 1, 1};
      for (int a = 0; a < p.rank; ++a) n[a] = p.n[a], hd[a] = in.dims[a];
      const int last = p.rank - 1;
      const auto half_at = [&](std::array<long long, 3> x) {
        long long lin = 0;
        for (int a = 0; a < p.rank; ++a) lin = lin * hd[a] + x[a];
        return half[lin];
      };
      double asym = 0;
      for (long long i = 0; i < full; ++i) {
        std::array<long long, 3> x{0, 0, 0}, m{0, 0, 0};
        long long r = i;
        for (int a = last; a >= 0; --a) x[a] = r % n[a], r /= n[a];
        for (int a = 0; a < p.rank; ++a) m[a] = (n[a] - x[a]) % n[a];
        cplx value;
        if (x[last] < hd[last]) {
          value = half_at(x);
          if (m[last] < hd[last])  // a bin whose mirror is stored too: they must be conjugate
            asym = std::max(asym, std::abs(value - std::conj(half_at(m))));
        } else {
          value = std::conj(half_at(m));
        }
        v[base + i] = value;
      }
      const double tol = sizeof(T) == 4 ? 1e-3 : 1e-8;
      if (asym > tol * peak) ++g_stats.non_hermitian;
    }
  }
  // 2. an out-of-place C2R overwrites its input (cuFFT documents it may): poison what was read
  if (real_output(p.type) && !in_place) {
    const T nan = std::numeric_limits<T>::quiet_NaN();
    for (long long b = 0; b < p.batch; ++b)
      for (long long i = 0; i < in.count(); ++i) {
        const long long o = 2 * in.offset(b, i);
        ri[o] = nan;
        ri[o + 1] = nan;
      }
  }
  // 3. the work area is cuFFT's to use: all of it
  if (p.work_size > 0) std::memset(work, 0xff, p.work_size);
  // 4. transform and write
  const int sign = real_input(p.type) ? -1 : real_output(p.type) ? +1 : direction;
  for (long long b = 0; b < p.batch; ++b) {
    dft(v, b * full, p, sign);
    const long long base = b * full;
    if (out.real) {
      for (long long i = 0; i < out.count(); ++i) {
        note(true, ro + out.offset(b, i), sizeof(T));
        ro[out.offset(b, i)] = static_cast<T>(v[base + i].real());
      }
    } else {
      // R2C: the first n_last/2 + 1 bins along the last axis; C2C: all.
      const int last = p.rank - 1;
      for (long long i = 0; i < out.count(); ++i) {
        long long r = i, src = 0, mult = 1;
        std::array<long long, 3> x{0, 0, 0};
        for (int a = last; a >= 0; --a) x[a] = r % out.dims[a], r /= out.dims[a];
        for (int a = last; a >= 0; --a) src += x[a] * mult, mult *= p.n[a];
        const long long o = 2 * out.offset(b, i);
        note(true, ro + o, 2 * sizeof(T));
        ro[o] = static_cast<T>(v[base + src].real());
        ro[o + 1] = static_cast<T>(v[base + src].imag());
      }
    }
  }
  ++p.executions;
  return CUFFT_SUCCESS;
}

}  // namespace

// ---- the cuFFT API ----------------------------------------------------------------------------

extern "C" {

cufftResult CUFFTAPI cufftCreate(cufftHandle* handle) {
  std::lock_guard<std::mutex> lock(g_mutex);
  ++g_stats.create;
  if (handle == nullptr) return failed(CUFFT_INVALID_VALUE, "cufftCreate: null handle pointer");
  const cufftHandle h = g_next_handle++;
  g_plans[h] = plan_state{};
  *handle = h;
  return CUFFT_SUCCESS;
}

cufftResult CUFFTAPI cufftDestroy(cufftHandle plan) {
  std::lock_guard<std::mutex> lock(g_mutex);
  ++g_stats.destroy;
  if (g_plans.erase(plan) == 0) return failed(CUFFT_INVALID_PLAN, "cufftDestroy: unknown handle");
  return CUFFT_SUCCESS;
}

cufftResult CUFFTAPI cufftSetAutoAllocation(cufftHandle plan, int autoAllocate) {
  std::lock_guard<std::mutex> lock(g_mutex);
  ++g_stats.set_auto_allocation;
  auto it = g_plans.find(plan);
  if (it == g_plans.end())
    return failed(CUFFT_INVALID_PLAN, "cufftSetAutoAllocation: unknown handle");
  // Documented to take effect for the cufftMakePlan* calls that follow it.
  if (it->second.info.made)
    return failed(CUFFT_INVALID_PLAN, "cufftSetAutoAllocation after the plan was made (no effect "
                                      "in cuFFT; refused by the stand-in)");
  it->second.info.auto_allocation = autoAllocate != 0;
  return CUFFT_SUCCESS;
}

cufftResult CUFFTAPI cufftMakePlanMany64(cufftHandle plan, int rank, long long int* n,
                                         long long int* inembed, long long int istride,
                                         long long int idist, long long int* onembed,
                                         long long int ostride, long long int odist, cufftType type,
                                         long long int batch, size_t* workSize) {
  std::lock_guard<std::mutex> lock(g_mutex);
  ++g_stats.make_plan;
  auto it = g_plans.find(plan);
  if (it == g_plans.end()) return failed(CUFFT_INVALID_PLAN, "cufftMakePlanMany64: unknown handle");
  cufft_plan_info& p = it->second.info;
  if (p.made) return failed(CUFFT_INVALID_PLAN, "cufftMakePlanMany64: the plan is made already");
  if (n == nullptr || workSize == nullptr)
    return failed(CUFFT_INVALID_VALUE, "cufftMakePlanMany64: null n or workSize");
  if (rank < 1 || rank > 3) return failed(CUFFT_INVALID_SIZE, "cufftMakePlanMany64: rank not 1-3");
  if (!known_type(type)) return failed(CUFFT_INVALID_TYPE, "cufftMakePlanMany64: unknown type");
  if (batch < 1) return failed(CUFFT_INVALID_SIZE, "cufftMakePlanMany64: batch < 1");
  for (int a = 0; a < rank; ++a)
    if (n[a] < 1) return failed(CUFFT_INVALID_SIZE, "cufftMakePlanMany64: n[i] < 1");
  cufft_plan_info q = p;
  q.rank = rank;
  q.type = type;
  q.batch = batch;
  q.n = {1, 1, 1};
  for (int a = 0; a < rank; ++a) q.n[a] = n[a];
  q.advanced = inembed != nullptr && onembed != nullptr;
  if (q.advanced) {
    if (istride < 1 || ostride < 1 || idist < 1 || odist < 1)
      return failed(CUFFT_INVALID_VALUE, "cufftMakePlanMany64: stride or distance < 1");
    q.inembed = q.onembed = {1, 1, 1};
    for (int a = 0; a < rank; ++a) q.inembed[a] = inembed[a], q.onembed[a] = onembed[a];
    q.istride = istride;
    q.idist = idist;
    q.ostride = ostride;
    q.odist = odist;
    // The storage must hold the logical extent along every axis whose embed enters the address.
    const layout li = side_layout(q, true, false), lo = side_layout(q, false, false);
    for (int a = 1; a < rank; ++a)
      if (q.inembed[a] < li.dims[a] || q.onembed[a] < lo.dims[a])
        return failed(CUFFT_INVALID_VALUE, "cufftMakePlanMany64: inembed / onembed smaller than "
                                           "the transform");
  } else {
    q.inembed = q.onembed = {0, 0, 0};
    q.istride = q.idist = q.ostride = q.odist = 0;  // ignored, as documented
  }
  long long total = 1;
  for (int a = 0; a < rank; ++a) total *= q.n[a];
  q.work_size = static_cast<std::size_t>(total * batch) * 2 * (is_double(type) ? 8 : 4);
  q.device = blfft_standin::current_device();
  q.made = true;
  p = q;
  if (p.auto_allocation) it->second.own_work.assign(p.work_size, 0);
  *workSize = p.work_size;
  return CUFFT_SUCCESS;
}

cufftResult CUFFTAPI cufftSetStream(cufftHandle plan, cudaStream_t stream) {
  std::lock_guard<std::mutex> lock(g_mutex);
  ++g_stats.set_stream;
  auto it = g_plans.find(plan);
  if (it == g_plans.end()) return failed(CUFFT_INVALID_PLAN, "cufftSetStream: unknown handle");
  it->second.info.stream = stream;
  return CUFFT_SUCCESS;
}

cufftResult CUFFTAPI cufftSetWorkArea(cufftHandle plan, void* workArea) {
  std::lock_guard<std::mutex> lock(g_mutex);
  ++g_stats.set_work_area;
  auto it = g_plans.find(plan);
  if (it == g_plans.end()) return failed(CUFFT_INVALID_PLAN, "cufftSetWorkArea: unknown handle");
  // Documented: overrides the work area; an auto-allocated one is freed.
  it->second.info.work_area = workArea;
  if (it->second.info.auto_allocation) {
    it->second.info.auto_allocation = false;
    it->second.own_work.clear();
  }
  return CUFFT_SUCCESS;
}

cufftResult CUFFTAPI cufftExecC2C(cufftHandle plan, cufftComplex* idata, cufftComplex* odata,
                                  int direction) {
  return execute<float>(plan, CUFFT_C2C, idata, odata, direction);
}
cufftResult CUFFTAPI cufftExecR2C(cufftHandle plan, cufftReal* idata, cufftComplex* odata) {
  return execute<float>(plan, CUFFT_R2C, idata, odata, CUFFT_FORWARD);
}
cufftResult CUFFTAPI cufftExecC2R(cufftHandle plan, cufftComplex* idata, cufftReal* odata) {
  return execute<float>(plan, CUFFT_C2R, idata, odata, CUFFT_INVERSE);
}
cufftResult CUFFTAPI cufftExecZ2Z(cufftHandle plan, cufftDoubleComplex* idata,
                                  cufftDoubleComplex* odata, int direction) {
  return execute<double>(plan, CUFFT_Z2Z, idata, odata, direction);
}
cufftResult CUFFTAPI cufftExecD2Z(cufftHandle plan, cufftDoubleReal* idata,
                                  cufftDoubleComplex* odata) {
  return execute<double>(plan, CUFFT_D2Z, idata, odata, CUFFT_FORWARD);
}
cufftResult CUFFTAPI cufftExecZ2D(cufftHandle plan, cufftDoubleComplex* idata,
                                  cufftDoubleReal* odata) {
  return execute<double>(plan, CUFFT_Z2D, idata, odata, CUFFT_INVERSE);
}

}  // extern "C"

// ---- introspection ----------------------------------------------------------------------------

namespace blfft_standin {

bool cufft_plan_info_of(cufftHandle h, cufft_plan_info* out) {
  std::lock_guard<std::mutex> lock(g_mutex);
  auto it = g_plans.find(h);
  if (it == g_plans.end()) return false;
  if (out) *out = it->second.info;
  return true;
}

cufft_counters cufft_stats() {
  std::lock_guard<std::mutex> lock(g_mutex);
  return g_stats;
}

void reset_cufft_stats() {
  std::lock_guard<std::mutex> lock(g_mutex);
  g_stats = {};
}

int cufft_live_plans() {
  std::lock_guard<std::mutex> lock(g_mutex);
  return static_cast<int>(g_plans.size());
}

std::string cufft_last_error() {
  return g_last_error;
}

}  // namespace blfft_standin
