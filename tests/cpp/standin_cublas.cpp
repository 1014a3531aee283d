// CPU stand-ins for the cuBLAS functions listed in standin_cublas.hpp (semantics there).

#include "standin_cublas.hpp"

#include <algorithm>
#include <cmath>
#include <complex>
#include <cstdint>
#include <cstring>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "standin_runtime.hpp"
#include "traffic.hpp"  // cuda/: operands' footprints for the emulation's traffic counts

// The opaque handle type: cublasHandle_t is a pointer to it.
struct cublasContext {
  int device = 0;
  cudaStream_t stream = nullptr;
  void* workspace = nullptr;
  std::size_t workspace_bytes = 0;
  cublasMath_t math = CUBLAS_DEFAULT_MATH;
  cublasPointerMode_t pointer_mode = CUBLAS_POINTER_MODE_HOST;
};

namespace {

using cplx = std::complex<double>;

std::mutex g_mutex;
std::map<cublasHandle_t, bool> g_handles;  // live handles
blfft_standin::cublas_counters g_stats;
thread_local std::string g_last_error;

cublasStatus_t failed(cublasStatus_t s, const std::string& why) {
  g_last_error = why;
  ++g_stats.failed;
  return s;
}

bool live(cublasHandle_t h) {
  return h != nullptr && g_handles.count(h) != 0;
}

/// Rounds a float to `bits` explicit mantissa bits, to nearest even (TF32: 10, bfloat16: 7).
float round_mantissa(float x, int bits) {
  if (!std::isfinite(x)) return x;
  uint32_t u;
  std::memcpy(&u, &x, 4);
  const int drop = 23 - bits;
  const uint32_t half = 1u << (drop - 1), mask = (1u << drop) - 1;
  const uint32_t rest = u & mask;
  u &= ~mask;
  if (rest > half || (rest == half && (u & (1u << drop)))) u += 1u << drop;
  float r;
  std::memcpy(&r, &u, 4);
  return r;
}

enum class kind { r32, c32, r64, c64 };

bool kind_of(cudaDataType t, kind& k) {
  switch (t) {
    case CUDA_R_32F: k = kind::r32; return true;
    case CUDA_C_32F: k = kind::c32; return true;
    case CUDA_R_64F: k = kind::r64; return true;
    case CUDA_C_64F: k = kind::c64; return true;
    default: return false;
  }
}
bool is_complex(kind k) {
  return k == kind::c32 || k == kind::c64;
}
bool is_single(kind k) {
  return k == kind::r32 || k == kind::c32;
}

/// Element i of an array of kind k, as complex double; `round_bits` > 0 rounds single values.
cplx load(const void* p, kind k, long long i, int round_bits) {
  switch (k) {
    case kind::r32: {
      float v = static_cast<const float*>(p)[i];
      return round_bits ? round_mantissa(v, round_bits) : v;
    }
    case kind::c32: {
      float re = static_cast<const float*>(p)[2 * i], im = static_cast<const float*>(p)[2 * i + 1];
      if (round_bits) re = round_mantissa(re, round_bits), im = round_mantissa(im, round_bits);
      return {re, im};
    }
    case kind::r64: return static_cast<const double*>(p)[i];
    default:
      return {static_cast<const double*>(p)[2 * i], static_cast<const double*>(p)[2 * i + 1]};
  }
}

void store(void* p, kind k, long long i, cplx v) {
  switch (k) {
    case kind::r32: static_cast<float*>(p)[i] = static_cast<float>(v.real()); break;
    case kind::c32:
      static_cast<float*>(p)[2 * i] = static_cast<float>(v.real());
      static_cast<float*>(p)[2 * i + 1] = static_cast<float>(v.imag());
      break;
    case kind::r64: static_cast<double*>(p)[i] = v.real(); break;
    default:
      static_cast<double*>(p)[2 * i] = v.real();
      static_cast<double*>(p)[2 * i + 1] = v.imag();
  }
}

std::size_t bytes_of(kind k) {
  return k == kind::r32 ? 4 : k == kind::c64 ? 16 : 8;
}

/// Reports element i of a matrix operand to the emulation's traffic recorder, if one is set.
void note(bool write, const void* p, kind k, long long i) {
  auto* const r = blfft::cuda::detail::current_traffic_recorder();
  if (!r) return;
  const void* at = static_cast<const char*>(p) + static_cast<long long>(bytes_of(k)) * i;
  if (write)
    r->write(at, bytes_of(k));
  else
    r->read(at, bytes_of(k));
}

bool valid_op(cublasOperation_t op) {
  return op == CUBLAS_OP_N || op == CUBLAS_OP_T || op == CUBLAS_OP_C;
}

}  // namespace

extern "C" {

cublasStatus_t cublasCreate_v2(cublasHandle_t* handle) {
  std::lock_guard<std::mutex> lock(g_mutex);
  ++g_stats.create;
  if (handle == nullptr) return failed(CUBLAS_STATUS_INVALID_VALUE, "cublasCreate: null pointer");
  auto* h = new cublasContext;
  h->device = blfft_standin::current_device();
  g_handles[h] = true;
  *handle = h;
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasDestroy_v2(cublasHandle_t handle) {
  std::lock_guard<std::mutex> lock(g_mutex);
  ++g_stats.destroy;
  if (!live(handle)) return failed(CUBLAS_STATUS_NOT_INITIALIZED, "cublasDestroy: not a handle");
  g_handles.erase(handle);
  delete handle;
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasSetWorkspace_v2(cublasHandle_t handle, void* workspace,
                                     size_t workspaceSizeInBytes) {
  std::lock_guard<std::mutex> lock(g_mutex);
  ++g_stats.set_workspace;
  if (!live(handle))
    return failed(CUBLAS_STATUS_NOT_INITIALIZED, "cublasSetWorkspace: not a handle");
  if (workspace == nullptr && workspaceSizeInBytes != 0)
    return failed(CUBLAS_STATUS_INVALID_VALUE,
                  "cublasSetWorkspace: null workspace of non-zero size");
  handle->workspace = workspace;
  handle->workspace_bytes = workspace ? workspaceSizeInBytes : 0;
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasSetStream_v2(cublasHandle_t handle, cudaStream_t streamId) {
  std::lock_guard<std::mutex> lock(g_mutex);
  ++g_stats.set_stream;
  if (!live(handle)) return failed(CUBLAS_STATUS_NOT_INITIALIZED, "cublasSetStream: not a handle");
  handle->stream = streamId;
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasGetStream_v2(cublasHandle_t handle, cudaStream_t* streamId) {
  std::lock_guard<std::mutex> lock(g_mutex);
  if (!live(handle)) return failed(CUBLAS_STATUS_NOT_INITIALIZED, "cublasGetStream: not a handle");
  if (streamId == nullptr) return failed(CUBLAS_STATUS_INVALID_VALUE, "cublasGetStream: null");
  *streamId = handle->stream;
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasSetPointerMode_v2(cublasHandle_t handle, cublasPointerMode_t mode) {
  std::lock_guard<std::mutex> lock(g_mutex);
  if (!live(handle))
    return failed(CUBLAS_STATUS_NOT_INITIALIZED, "cublasSetPointerMode: not a handle");
  if (mode != CUBLAS_POINTER_MODE_HOST && mode != CUBLAS_POINTER_MODE_DEVICE)
    return failed(CUBLAS_STATUS_INVALID_VALUE, "cublasSetPointerMode: unknown mode");
  handle->pointer_mode = mode;  // emulated device memory is host memory: both read the same
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasSetMathMode(cublasHandle_t handle, cublasMath_t mode) {
  std::lock_guard<std::mutex> lock(g_mutex);
  if (!live(handle))
    return failed(CUBLAS_STATUS_NOT_INITIALIZED, "cublasSetMathMode: not a handle");
  handle->math = mode;
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasGemmStridedBatchedEx(
    cublasHandle_t handle, cublasOperation_t transa, cublasOperation_t transb, int m, int n, int k,
    const void* alpha, const void* A, cudaDataType Atype, int lda, long long int strideA,
    const void* B, cudaDataType Btype, int ldb, long long int strideB, const void* beta, void* C,
    cudaDataType Ctype, int ldc, long long int strideC, int batchCount,
    cublasComputeType_t computeType, cublasGemmAlgo_t /*algo: any algorithm computes the same*/) {
  std::lock_guard<std::mutex> lock(g_mutex);
  ++g_stats.gemm;
  if (!live(handle)) return failed(CUBLAS_STATUS_NOT_INITIALIZED, "gemm: not a live handle");
  if (!valid_op(transa) || !valid_op(transb))
    return failed(CUBLAS_STATUS_INVALID_VALUE, "gemm: unknown or unsupported operation");
  if (m < 0 || n < 0 || k < 0 || batchCount < 0)
    return failed(CUBLAS_STATUS_INVALID_VALUE, "gemm: m, n, k or batchCount < 0");
  const int a_rows = transa == CUBLAS_OP_N ? m : k, b_rows = transb == CUBLAS_OP_N ? k : n;
  if (lda < std::max(1, a_rows) || ldb < std::max(1, b_rows) || ldc < std::max(1, m))
    return failed(CUBLAS_STATUS_INVALID_VALUE, "gemm: a leading dimension is too small");
  kind ka, kb, kc;
  if (!kind_of(Atype, ka) || !kind_of(Btype, kb) || !kind_of(Ctype, kc) || ka != kb || kb != kc)
    return failed(CUBLAS_STATUS_NOT_SUPPORTED,
                  "gemm: type combination not supported (by the stand-in: A, B, C of one of "
                  "R_32F, C_32F, R_64F, C_64F)");
  int round_bits = 0;
  switch (computeType) {
    case CUBLAS_COMPUTE_32F:
      if (handle->math == CUBLAS_TF32_TENSOR_OP_MATH) round_bits = 10;
      break;
    case CUBLAS_COMPUTE_32F_FAST_TF32:
    case CUBLAS_COMPUTE_32F_FAST_16F: round_bits = 10; break;
    case CUBLAS_COMPUTE_32F_FAST_16BF: round_bits = 7; break;
    case CUBLAS_COMPUTE_32F_PEDANTIC:
    case CUBLAS_COMPUTE_64F:
    case CUBLAS_COMPUTE_64F_PEDANTIC: break;
    default:
      return failed(CUBLAS_STATUS_NOT_SUPPORTED,
                    "gemm: compute type not supported by the stand-in");
  }
  const bool single_compute =
      computeType != CUBLAS_COMPUTE_64F && computeType != CUBLAS_COMPUTE_64F_PEDANTIC;
  if (single_compute != is_single(kc))
    return failed(CUBLAS_STATUS_NOT_SUPPORTED, "gemm: compute type does not match the data type");
  const int dev = blfft_standin::current_device();
  if (dev != handle->device)
    return failed(CUBLAS_STATUS_INVALID_VALUE, "gemm: handle created on device " +
                                                   std::to_string(handle->device) + ", device " +
                                                   std::to_string(dev) + " is current");
  const int sdev = blfft_standin::stream_device(handle->stream);
  if (sdev >= 0 && sdev != handle->device)
    return failed(CUBLAS_STATUS_INVALID_VALUE,
                  "gemm: the stream belongs to device " + std::to_string(sdev));
  if (m == 0 || n == 0 || batchCount == 0) return CUBLAS_STATUS_SUCCESS;
  if (batchCount > 1 && std::llabs(strideC) < static_cast<long long>(ldc) * (n - 1) + m)
    return failed(CUBLAS_STATUS_INVALID_VALUE,
                  "gemm: the C matrices of different batches overlap (undefined in cuBLAS)");
  if (alpha == nullptr || beta == nullptr || (k > 0 && (A == nullptr || B == nullptr)) ||
      C == nullptr)
    return failed(CUBLAS_STATUS_INVALID_VALUE, "gemm: null pointer");
  if (round_bits) ++g_stats.tf32_rounded;

  const kind scale = kc;  // the scale type follows C for these compute types
  const cplx al = load(alpha, scale, 0, 0), be = load(beta, scale, 0, 0);
  if (handle->workspace) std::memset(handle->workspace, 0xff, handle->workspace_bytes);
  // op(X)[r][c] of batch b, X of kind kx, leading dimension ld and batch stride `stride`.
  const auto op_at = [&](const void* X, kind kx, cublasOperation_t t, int ld, long long stride,
                         long long b, int r, int c) {
    const long long off = b * stride + (t == CUBLAS_OP_N ? r + static_cast<long long>(c) * ld
                                                         : c + static_cast<long long>(r) * ld);
    note(false, X, kx, off);
    const cplx v = load(X, kx, off, round_bits);
    return t == CUBLAS_OP_C ? std::conj(v) : v;
  };
  for (long long b = 0; b < batchCount; ++b)
    for (int j = 0; j < n; ++j)
      for (int i = 0; i < m; ++i) {
        cplx s = 0;
        for (int l = 0; l < k; ++l)
          s += op_at(A, ka, transa, lda, strideA, b, i, l) *
               op_at(B, kb, transb, ldb, strideB, b, l, j);
        const long long c = b * strideC + i + static_cast<long long>(j) * ldc;
        cplx r = al * s;
        if (be != cplx(0)) {  // beta == 0: C is not read
          note(false, C, kc, c);
          r += be * load(C, kc, c, 0);
        }
        if (!is_complex(kc)) r = r.real();
        note(true, C, kc, c);
        store(C, kc, c, r);
      }
  return CUBLAS_STATUS_SUCCESS;
}

}  // extern "C"

namespace blfft_standin {

cublas_counters cublas_stats() {
  std::lock_guard<std::mutex> lock(g_mutex);
  return g_stats;
}
void reset_cublas_stats() {
  std::lock_guard<std::mutex> lock(g_mutex);
  g_stats = {};
}
int cublas_live_handles() {
  std::lock_guard<std::mutex> lock(g_mutex);
  return static_cast<int>(g_handles.size());
}
std::string cublas_last_error() {
  return g_last_error;
}

}  // namespace blfft_standin
