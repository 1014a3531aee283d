// blfft._core: the Python binding of the C++ core.
//
// Tensors cross in both directions by DLPack, without copies: every argument that is a tensor is
// either a DLPack capsule or an object with __dlpack__ (a torch.Tensor, a NumPy array, ...).
// Python allocates every output and every saved spectrum and passes it in, so C++ never owns
// framework memory. Buffers that C++ does own (an energy map) go out as DLPack producers.
// The GIL is released while the core computes.

#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <cstring>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "blfft/blfft.hpp"

namespace py = pybind11;

#ifndef BLFFT_PY_CUDA_BUILT
#define BLFFT_PY_CUDA_BUILT 0
#endif
#ifndef BLFFT_PY_CUDA_ARCHITECTURES
#define BLFFT_PY_CUDA_ARCHITECTURES ""
#endif

namespace {

// ------------------------------------------------------------------------------------------------
// DLPack, ABI version 1.0, declared here from the specification (https://dmlc.github.io/dlpack).
// Only the parts this module reads or writes. Layouts must match the C structs exactly.
// ------------------------------------------------------------------------------------------------
namespace dl {

// DLDeviceType values (a C enum: 32 bits).
constexpr int32_t device_cpu = 1;
constexpr int32_t device_cuda = 2;
constexpr int32_t device_cuda_host = 3;
constexpr int32_t device_rocm = 10;
constexpr int32_t device_cuda_managed = 13;

// DLDataTypeCode values.
constexpr uint8_t code_int = 0;
constexpr uint8_t code_uint = 1;
constexpr uint8_t code_float = 2;
constexpr uint8_t code_bfloat = 4;
constexpr uint8_t code_complex = 5;
constexpr uint8_t code_bool = 6;

struct device {
  int32_t device_type;
  int32_t device_id;
};

struct data_type {
  uint8_t code;
  uint8_t bits;
  uint16_t lanes;
};

struct tensor {
  void* data;            // base pointer; the first element is at data + byte_offset
  device dev;
  int32_t ndim;
  data_type dtype;
  int64_t* shape;        // ndim entries
  int64_t* strides;      // ndim entries, in elements; may be null: C-contiguous
  uint64_t byte_offset;
};

// The legacy ("dltensor") capsule payload.
struct managed_tensor {
  tensor dl_tensor;
  void* manager_ctx;
  void (*deleter)(managed_tensor* self);
};

struct version {
  uint32_t major;
  uint32_t minor;
};

// The versioned ("dltensor_versioned") capsule payload, DLPack >= 1.0.
struct managed_tensor_versioned {
  version ver;
  void* manager_ctx;
  void (*deleter)(managed_tensor_versioned* self);
  uint64_t flags;
  tensor dl_tensor;
};

constexpr uint64_t flag_read_only = uint64_t(1) << 0;
constexpr uint64_t flag_is_copied = uint64_t(1) << 1;
constexpr uint32_t abi_major = 1;
constexpr uint32_t abi_minor = 0;

const char* const name_legacy = "dltensor";
const char* const name_legacy_used = "used_dltensor";
const char* const name_versioned = "dltensor_versioned";
const char* const name_versioned_used = "used_dltensor_versioned";

}  // namespace dl

using blfft::error;
using blfft::error_code;

std::string device_name(const dl::device& d) {
  std::ostringstream os;
  switch (d.device_type) {
    case dl::device_cpu: os << "cpu"; break;
    case dl::device_cuda: os << "cuda:" << d.device_id; break;
    case dl::device_cuda_host: os << "cuda_host"; break;
    case dl::device_rocm: os << "rocm:" << d.device_id; break;
    case dl::device_cuda_managed: os << "cuda_managed:" << d.device_id; break;
    default: os << "DLPack device type " << d.device_type << ":" << d.device_id;
  }
  return os.str();
}

std::string dtype_name(const dl::data_type& t) {
  std::ostringstream os;
  switch (t.code) {
    case dl::code_int: os << "int"; break;
    case dl::code_uint: os << "uint"; break;
    case dl::code_float: os << "float"; break;
    case dl::code_bfloat: os << "bfloat"; break;
    case dl::code_complex: os << "complex"; break;
    case dl::code_bool: os << "bool"; break;
    default: os << "type code " << int(t.code) << " of ";
  }
  os << int(t.bits);
  if (t.lanes != 1) os << "x" << t.lanes;
  return os.str();
}

// ------------------------------------------------------------------------------------------------
// Consuming: one tensor argument taken from a capsule or from obj.__dlpack__().
// ------------------------------------------------------------------------------------------------

enum class scalar { f32, f64 };

/// A tensor borrowed from its producer for the duration of one call. Following the DLPack
/// protocol, the capsule is renamed to "used_..." (so the producer's capsule destructor leaves it
/// alone) and this object calls the producer's deleter when it goes away. It is created and
/// destroyed with the GIL held; the raw view it exposes may be used without the GIL.
class imported {
 public:
  imported(py::handle obj, const char* name) : name_(name) {
    py::object capsule;
    if (PyCapsule_CheckExact(obj.ptr())) {
      capsule = py::reinterpret_borrow<py::object>(obj);
    } else if (py::hasattr(obj, "__dlpack__")) {
      capsule = request_capsule(obj);
    } else {
      throw py::type_error(std::string("blfft: ") + name +
                           " must be a tensor (an object with __dlpack__) or a DLPack capsule, "
                           "got " + std::string(py::str(py::type::of(obj))));
    }
    const char* cname = PyCapsule_GetName(capsule.ptr());
    if (cname == nullptr) throw py::error_already_set();
    if (std::strcmp(cname, dl::name_versioned) == 0) {
      auto* m = static_cast<dl::managed_tensor_versioned*>(
          PyCapsule_GetPointer(capsule.ptr(), dl::name_versioned));
      if (m == nullptr) throw py::error_already_set();
      if (PyCapsule_SetName(capsule.ptr(), dl::name_versioned_used) != 0)
        throw py::error_already_set();
      versioned_ = m;
      guard_.versioned = m;
      if (m->ver.major != dl::abi_major) {
        // The layout of a future major version is unknown: release it without reading further.
        std::ostringstream os;
        os << "blfft: " << name << " is a DLPack " << m->ver.major << "." << m->ver.minor
           << " tensor; this module reads DLPack " << dl::abi_major << ".x";
        throw py::type_error(os.str());
      }
      t_ = &m->dl_tensor;
      read_only_ = (m->flags & dl::flag_read_only) != 0;
      copied_ = (m->flags & dl::flag_is_copied) != 0;
    } else if (std::strcmp(cname, dl::name_legacy) == 0) {
      auto* m =
          static_cast<dl::managed_tensor*>(PyCapsule_GetPointer(capsule.ptr(), dl::name_legacy));
      if (m == nullptr) throw py::error_already_set();
      if (PyCapsule_SetName(capsule.ptr(), dl::name_legacy_used) != 0)
        throw py::error_already_set();
      legacy_ = m;
      guard_.legacy = m;
      t_ = &m->dl_tensor;
    } else if (std::strcmp(cname, dl::name_legacy_used) == 0 ||
               std::strcmp(cname, dl::name_versioned_used) == 0) {
      throw py::value_error(std::string("blfft: ") + name +
                            " is a DLPack capsule that was already consumed");
    } else {
      throw py::type_error(std::string("blfft: ") + name + " is a capsule named '" + cname +
                           "', not a DLPack tensor");
    }
    if (t_->ndim < 0) throw py::value_error(std::string("blfft: ") + name + " has negative rank");
    shape_.assign(t_->shape, t_->shape + t_->ndim);
    if (t_->strides != nullptr) {
      strides_.assign(t_->strides, t_->strides + t_->ndim);
    } else {
      strides_.resize(shape_.size());
      int64_t s = 1;
      for (size_t i = shape_.size(); i-- > 0;) {
        strides_[i] = s;
        s *= shape_[i];
      }
    }
  }

  imported(const imported&) = delete;
  imported& operator=(const imported&) = delete;

  ~imported() = default;

  const char* name() const { return name_; }
  const dl::tensor& raw() const { return *t_; }
  const std::vector<int64_t>& shape() const { return shape_; }
  const std::vector<int64_t>& strides() const { return strides_; }
  bool versioned() const { return versioned_ != nullptr; }
  bool read_only() const { return read_only_; }
  bool copied() const { return copied_; }
  uint64_t flags() const { return versioned_ ? versioned_->flags : 0; }
  int64_t numel() const {
    int64_t n = 1;
    for (int64_t s : shape_) n *= s;
    return n;
  }
  bool contiguous() const {
    int64_t s = 1;
    for (size_t i = shape_.size(); i-- > 0;) {
      if (shape_[i] != 1 && strides_[i] != s) return false;
      s *= shape_[i];
    }
    return true;
  }
  void* data() const { return static_cast<char*>(t_->data) + t_->byte_offset; }

 private:
  static py::object request_capsule(py::handle obj) {
    // Ask for a versioned capsule; producers that predate DLPack 1.0 do not know max_version.
    try {
      return obj.attr("__dlpack__")(py::arg("max_version") = py::make_tuple(dl::abi_major,
                                                                            dl::abi_minor));
    } catch (py::error_already_set& e) {
      if (!e.matches(PyExc_TypeError)) throw;
    }
    return obj.attr("__dlpack__")();
  }

  /// Calls the producer's deleter once the capsule is ours, also when the constructor throws
  /// after taking it (a member is destroyed then, the object itself is not).
  struct release_guard {
    dl::managed_tensor_versioned* versioned = nullptr;
    dl::managed_tensor* legacy = nullptr;
    release_guard() = default;
    release_guard(const release_guard&) = delete;
    release_guard& operator=(const release_guard&) = delete;
    ~release_guard() {
      // Deleters may be null (allowed when the producer keeps the memory alive by itself).
      if (versioned && versioned->deleter) versioned->deleter(versioned);
      if (legacy && legacy->deleter) legacy->deleter(legacy);
    }
  };

  const char* name_;
  release_guard guard_;
  dl::managed_tensor_versioned* versioned_ = nullptr;
  dl::managed_tensor* legacy_ = nullptr;
  const dl::tensor* t_ = nullptr;
  bool read_only_ = false, copied_ = false;
  std::vector<int64_t> shape_, strides_;
};

[[noreturn]] void fail(error_code code, const std::string& msg) { throw error(code, "blfft: " + msg); }

/// The device check every tensor goes through: the CPU backend reads host memory only.
void require_host(const imported& a) {
  const auto& d = a.raw().dev;
  if (d.device_type == dl::device_cpu || d.device_type == dl::device_cuda_host) return;
  if (d.device_type == dl::device_cuda || d.device_type == dl::device_cuda_managed) {
    fail(error_code::unsupported,
         std::string(a.name()) + " is on " + device_name(d) +
             ": CUDA backend not built (this build of blfft runs on the CPU only)");
  }
  fail(error_code::unsupported, std::string(a.name()) + " is on " + device_name(d) +
                                    "; blfft runs on the CPU");
}

scalar scalar_of(const imported& a) {
  const auto& t = a.raw().dtype;
  if (t.code == dl::code_float && t.lanes == 1) {
    if (t.bits == 32) return scalar::f32;
    if (t.bits == 64) return scalar::f64;
  }
  fail(error_code::type_mismatch,
       std::string(a.name()) + " must be float32 or float64, got " + dtype_name(t));
}

/// Checks every tensor of one call: host memory, float32/float64, one dtype for all, outputs
/// writable and not copies.
scalar check_common(std::initializer_list<const imported*> inputs,
                    std::initializer_list<const imported*> outputs) {
  const imported* first = nullptr;
  scalar s = scalar::f32;
  auto visit = [&](const imported* a) {
    if (a == nullptr) return;
    require_host(*a);
    const scalar t = scalar_of(*a);
    if (first == nullptr) {
      first = a;
      s = t;
    } else if (t != s) {
      fail(error_code::type_mismatch, std::string(a->name()) + " is " +
                                          dtype_name(a->raw().dtype) + " but " + first->name() +
                                          " is " + dtype_name(first->raw().dtype));
    }
  };
  for (const imported* a : inputs) visit(a);
  for (const imported* a : outputs) {
    visit(a);
    if (a == nullptr) continue;
    if (a->read_only())
      fail(error_code::invalid_argument, std::string(a->name()) + " is read-only");
    if (a->copied())
      fail(error_code::invalid_argument,
           std::string(a->name()) + " was exported as a copy; results written to it would be lost");
  }
  return s;
}

template <class T>
blfft::tensor_view<T> view_of(const imported& a) {
  return blfft::tensor_view<T>(static_cast<T*>(a.data()), a.shape(), a.strides());
}

/// A flat buffer (a spectrum or a bias) of exactly `size` elements, contiguous.
template <class T>
T* flat_of(const imported& a, int64_t size) {
  if (!a.contiguous())
    fail(error_code::invalid_argument, std::string(a.name()) + " must be contiguous");
  if (a.numel() != size) {
    std::ostringstream os;
    os << a.name() << " has " << a.numel() << " elements, the geometry needs " << size;
    fail(error_code::shape_mismatch, os.str());
  }
  return static_cast<T*>(a.data());
}

using opt_imported = std::optional<imported>;

void maybe_import(opt_imported& slot, const py::object& obj, const char* name) {
  if (!obj.is_none()) slot.emplace(obj, name);
}

const imported* ptr(const opt_imported& o) { return o ? &*o : nullptr; }

// ------------------------------------------------------------------------------------------------
// Producing: buffers owned by C++ handed to Python as DLPack tensors.
// ------------------------------------------------------------------------------------------------

/// A C++-owned contiguous buffer that Python (torch.from_dlpack, numpy.from_dlpack)
/// can take without a copy. Each __dlpack__ call makes a new capsule that shares the storage.
class exported {
 public:
  template <class T>
  static exported from_vector(std::vector<T> v, std::vector<int64_t> shape) {
    exported e;
    auto owner = std::make_shared<std::vector<T>>(std::move(v));
    e.data_ = owner->data();
    e.owner_ = owner;
    e.shape_ = std::move(shape);
    e.dtype_ = type_of<T>();
    return e;
  }

  py::object dlpack(const py::object& stream, const py::object& max_version,
                    const py::object& dl_device, const py::object& copy) const {
    if (!stream.is_none()) {
      // DLPack says CPU producers receive stream=None; -1 ("no synchronisation") is harmless.
      if (!(py::isinstance<py::int_>(stream) && stream.cast<int64_t>() == -1))
        throw py::value_error("blfft: stream must be None for a CPU tensor");
    }
    if (!dl_device.is_none()) {
      auto d = dl_device.cast<std::pair<int32_t, int32_t>>();
      if (d.first != dl::device_cpu)
        throw py::buffer_error("blfft: this buffer lives on the CPU and cannot be exported to "
                               "another device");
    }
    bool versioned = false;
    if (!max_version.is_none()) {
      auto v = max_version.cast<std::pair<uint32_t, uint32_t>>();
      versioned = v.first >= dl::abi_major;
    }
    const bool make_copy = !copy.is_none() && copy.cast<bool>();
    auto* ctx = new context;
    ctx->shape = shape_;
    if (make_copy) {
      const size_t bytes = static_cast<size_t>(numel()) * dtype_.bits / 8;
      auto buf = std::make_shared<std::vector<char>>(bytes > 0 ? bytes : 1);
      std::memcpy(buf->data(), data_, bytes);
      ctx->owner = buf;
      ctx->data = buf->data();
    } else {
      ctx->owner = owner_;
      ctx->data = data_;
    }
    dl::tensor t{};
    t.data = ctx->data;
    t.dev = {dl::device_cpu, 0};
    t.ndim = static_cast<int32_t>(ctx->shape.size());
    t.dtype = dtype_;
    t.shape = ctx->shape.data();
    t.strides = nullptr;  // C-contiguous
    t.byte_offset = 0;
    PyObject* cap = nullptr;
    if (versioned) {
      auto& m = ctx->versioned;
      m.ver = {dl::abi_major, dl::abi_minor};
      m.manager_ctx = ctx;
      m.deleter = [](dl::managed_tensor_versioned* self) {
        delete static_cast<context*>(self->manager_ctx);
      };
      // Each buffer is made for one Python caller and nothing in C++ reads it again, so the
      // consumer may write to it.
      m.flags = make_copy ? dl::flag_is_copied : 0;
      m.dl_tensor = t;
      cap = PyCapsule_New(&m, dl::name_versioned, &capsule_destructor<true>);
    } else {
      auto& m = ctx->legacy;
      m.dl_tensor = t;
      m.manager_ctx = ctx;
      m.deleter = [](dl::managed_tensor* self) { delete static_cast<context*>(self->manager_ctx); };
      cap = PyCapsule_New(&m, dl::name_legacy, &capsule_destructor<false>);
    }
    if (cap == nullptr) {
      delete ctx;
      throw py::error_already_set();
    }
    return py::reinterpret_steal<py::object>(cap);
  }

  py::tuple dlpack_device() const { return py::make_tuple(dl::device_cpu, 0); }
  const std::vector<int64_t>& shape() const { return shape_; }
  int64_t numel() const {
    int64_t n = 1;
    for (int64_t s : shape_) n *= s;
    return n;
  }

 private:
  struct context {
    std::shared_ptr<void> owner;
    void* data = nullptr;
    std::vector<int64_t> shape;
    dl::managed_tensor legacy{};
    dl::managed_tensor_versioned versioned{};
  };

  /// Frees the payload of a capsule nobody consumed (a consumer renames it to "used_...").
  template <bool Versioned>
  static void capsule_destructor(PyObject* cap) {
    const char* name = Versioned ? dl::name_versioned : dl::name_legacy;
    if (!PyCapsule_IsValid(cap, name)) return;
    void* p = PyCapsule_GetPointer(cap, name);
    if constexpr (Versioned) {
      auto* m = static_cast<dl::managed_tensor_versioned*>(p);
      if (m->deleter) m->deleter(m);
    } else {
      auto* m = static_cast<dl::managed_tensor*>(p);
      if (m->deleter) m->deleter(m);
    }
  }

  template <class T>
  static dl::data_type type_of() {
    if constexpr (std::is_floating_point_v<T>) {
      return {dl::code_float, static_cast<uint8_t>(8 * sizeof(T)), 1};
    } else if constexpr (std::is_signed_v<T>) {
      return {dl::code_int, static_cast<uint8_t>(8 * sizeof(T)), 1};
    } else {
      return {dl::code_uint, static_cast<uint8_t>(8 * sizeof(T)), 1};
    }
  }

  std::shared_ptr<void> owner_;
  void* data_ = nullptr;
  std::vector<int64_t> shape_;
  dl::data_type dtype_{};
};

// ------------------------------------------------------------------------------------------------
// The compute entry points.
// ------------------------------------------------------------------------------------------------

template <class T>
std::shared_ptr<const blfft::plan<T>> plan_for(const blfft::conv_params& p,
                                               const blfft::compression& c) {
  return blfft::get_plan<T>(p, c);
}

void forward(const blfft::conv_params& p, const blfft::compression& c, const py::object& x,
             const py::object& w, const py::object& bias, const py::object& y,
             const py::object& x_spectrum, const py::object& w_spectrum) {
  imported X(x, "input"), W(w, "weight"), Y(y, "output");
  opt_imported B, XS, WS;
  maybe_import(B, bias, "bias");
  maybe_import(XS, x_spectrum, "x_spectrum");
  maybe_import(WS, w_spectrum, "w_spectrum");
  const scalar s = check_common({&X, &W, ptr(B)}, {&Y, ptr(XS), ptr(WS)});
  auto run = [&](auto tag) {
    using T = decltype(tag);
    py::gil_scoped_release nogil;
    auto pl = plan_for<T>(p, c);
    const auto& g = pl->geometry();
    const T* b = B ? flat_of<T>(*B, g.params.out_channels) : nullptr;
    T* xs = XS ? flat_of<T>(*XS, g.x_spectrum_size()) : nullptr;
    T* ws = WS ? flat_of<T>(*WS, g.w_spectrum_size()) : nullptr;
    pl->forward(view_of<const T>(X), view_of<const T>(W), b, view_of<T>(Y), xs, ws);
  };
  if (s == scalar::f32) run(float{}); else run(double{});
}

void input_spectrum(const blfft::conv_params& p, const blfft::compression& c,
                    const py::object& x, const py::object& x_spectrum) {
  imported X(x, "input"), XS(x_spectrum, "x_spectrum");
  const scalar s = check_common({&X}, {&XS});
  auto run = [&](auto tag) {
    using T = decltype(tag);
    py::gil_scoped_release nogil;
    auto pl = plan_for<T>(p, c);
    pl->input_spectrum(view_of<const T>(X), flat_of<T>(XS, pl->geometry().x_spectrum_size()));
  };
  if (s == scalar::f32) run(float{}); else run(double{});
}

void weight_spectrum(const blfft::conv_params& p, const blfft::compression& c,
                     const py::object& w, const py::object& w_spectrum) {
  imported W(w, "weight"), WS(w_spectrum, "w_spectrum");
  const scalar s = check_common({&W}, {&WS});
  auto run = [&](auto tag) {
    using T = decltype(tag);
    py::gil_scoped_release nogil;
    auto pl = plan_for<T>(p, c);
    pl->weight_spectrum(view_of<const T>(W), flat_of<T>(WS, pl->geometry().w_spectrum_size()));
  };
  if (s == scalar::f32) run(float{}); else run(double{});
}

void forward_spectra(const blfft::conv_params& p, const blfft::compression& c,
                     const py::object& x_spectrum, const py::object& w_spectrum,
                     const py::object& bias, const py::object& y) {
  imported XS(x_spectrum, "x_spectrum"), WS(w_spectrum, "w_spectrum"), Y(y, "output");
  opt_imported B;
  maybe_import(B, bias, "bias");
  const scalar s = check_common({&XS, &WS, ptr(B)}, {&Y});
  auto run = [&](auto tag) {
    using T = decltype(tag);
    py::gil_scoped_release nogil;
    auto pl = plan_for<T>(p, c);
    const auto& g = pl->geometry();
    const T* b = B ? flat_of<T>(*B, g.params.out_channels) : nullptr;
    pl->forward_spectra(flat_of<T>(XS, g.x_spectrum_size()), flat_of<T>(WS, g.w_spectrum_size()),
                        b, view_of<T>(Y));
  };
  if (s == scalar::f32) run(float{}); else run(double{});
}

void backward(const blfft::conv_params& p, const blfft::compression& c,
              const py::object& grad_output, const py::object& x_spectrum,
              const py::object& w_spectrum, const py::object& grad_input,
              const py::object& grad_weight, const py::object& grad_bias) {
  imported G(grad_output, "grad_output");
  opt_imported XS, WS, GI, GW, GB;
  maybe_import(XS, x_spectrum, "x_spectrum");
  maybe_import(WS, w_spectrum, "w_spectrum");
  maybe_import(GI, grad_input, "grad_input");
  maybe_import(GW, grad_weight, "grad_weight");
  maybe_import(GB, grad_bias, "grad_bias");
  const scalar s = check_common({&G, ptr(XS), ptr(WS)}, {ptr(GI), ptr(GW), ptr(GB)});
  if (GI && !WS)
    fail(error_code::invalid_argument, "grad_input needs w_spectrum (got None)");
  if (GW && !XS)
    fail(error_code::invalid_argument, "grad_weight needs x_spectrum (got None)");
  auto run = [&](auto tag) {
    using T = decltype(tag);
    py::gil_scoped_release nogil;
    auto pl = plan_for<T>(p, c);
    const auto& g = pl->geometry();
    const T* xs = XS ? flat_of<T>(*XS, g.x_spectrum_size()) : nullptr;
    const T* ws = WS ? flat_of<T>(*WS, g.w_spectrum_size()) : nullptr;
    T* gb = GB ? flat_of<T>(*GB, g.params.out_channels) : nullptr;
    std::optional<blfft::tensor_view<T>> gi, gw;
    if (GI) gi = view_of<T>(*GI);
    if (GW) gw = view_of<T>(*GW);
    pl->backward(view_of<const T>(G), xs, ws, gi ? &*gi : nullptr, gw ? &*gw : nullptr, gb);
  };
  if (s == scalar::f32) run(float{}); else run(double{});
}

blfft::energy_selection select_by_energy(const blfft::conv_params& p, const py::object& x,
                                         double fraction) {
  imported X(x, "input");
  const scalar s = check_common({&X}, {});
  py::gil_scoped_release nogil;
  if (s == scalar::f32) return blfft::select_by_energy<float>(p, view_of<const float>(X), fraction);
  return blfft::select_by_energy<double>(p, view_of<const double>(X), fraction);
}

exported energy_map(const blfft::conv_params& p, const py::object& x) {
  imported X(x, "input");
  const scalar s = check_common({&X}, {});
  std::vector<double> e;
  {
    py::gil_scoped_release nogil;
    e = s == scalar::f32 ? blfft::energy_map<float>(p, view_of<const float>(X))
                         : blfft::energy_map<double>(p, view_of<const double>(X));
  }
  const auto g = blfft::make_geometry(p, blfft::compression::none());
  return exported::from_vector(std::move(e), {g.grid[0], g.bins_w});
}

/// What the binding reads from a DLPack tensor: for tests and debugging.
py::dict dlpack_info(const py::object& obj) {
  imported a(obj, "tensor");
  const auto& t = a.raw();
  py::dict d;
  d["versioned"] = a.versioned();
  d["flags"] = a.flags();
  d["device"] = device_name(t.dev);
  d["device_type"] = t.dev.device_type;
  d["device_id"] = t.dev.device_id;
  d["dtype"] = dtype_name(t.dtype);
  d["shape"] = a.shape();
  d["strides"] = a.strides();
  d["strides_null"] = t.strides == nullptr;
  d["byte_offset"] = t.byte_offset;
  d["data"] = reinterpret_cast<uintptr_t>(a.data());
  return d;
}

std::string arr_str(const std::array<int64_t, 2>& a) {
  return "(" + std::to_string(a[0]) + ", " + std::to_string(a[1]) + ")";
}

PyObject* blfft_error_type = nullptr;

const char* code_name(error_code c) {
  switch (c) {
    case error_code::invalid_argument: return "invalid_argument";
    case error_code::shape_mismatch: return "shape_mismatch";
    case error_code::overflow: return "overflow";
    case error_code::type_mismatch: return "type_mismatch";
    case error_code::unsupported: return "unsupported";
    case error_code::backend: return "backend";
  }
  return "unknown";
}

}  // namespace

PYBIND11_MODULE(_core, m) {
  m.doc() = "blfft._core: binding of the blfft C++ core (band-limited FFT convolution)";

  // --- errors -----------------------------------------------------------------------------------
  blfft_error_type = PyErr_NewExceptionWithDoc(
      "blfft.BlfftError",
      "An error from the blfft core that is not a bad argument (unsupported request, backend "
      "failure). `code` names the core's error_code.",
      PyExc_RuntimeError, nullptr);
  if (blfft_error_type == nullptr) throw py::error_already_set();
  m.add_object("BlfftError", py::reinterpret_borrow<py::object>(blfft_error_type));
  py::register_exception_translator([](std::exception_ptr e) {
    try {
      if (e) std::rethrow_exception(e);
    } catch (const blfft::error& err) {
      switch (err.code()) {
        case error_code::invalid_argument:
        case error_code::shape_mismatch:
        case error_code::overflow:
          PyErr_SetString(PyExc_ValueError, err.what());
          return;
        case error_code::type_mismatch:
          PyErr_SetString(PyExc_TypeError, err.what());
          return;
        default: {
          PyObject* inst = PyObject_CallFunction(blfft_error_type, "s", err.what());
          if (inst == nullptr) return;  // the call's own error is set
          PyObject* code = PyUnicode_FromString(code_name(err.code()));
          if (code != nullptr) {
            PyObject_SetAttrString(inst, "code", code);
            Py_DECREF(code);
          }
          PyErr_SetObject(blfft_error_type, inst);
          Py_DECREF(inst);
          return;
        }
      }
    }
  });

  // --- build facts ------------------------------------------------------------------------------
  m.attr("__version__") = BLFFT_VERSION_STRING;
  m.attr("cuda_built") = bool(BLFFT_PY_CUDA_BUILT);
  {
    std::vector<std::string> archs;
    std::string s = BLFFT_PY_CUDA_ARCHITECTURES;
    std::stringstream ss(s);
    for (std::string item; std::getline(ss, item, ',');)
      if (!item.empty()) archs.push_back(item);
    m.attr("cuda_architectures") = archs;
  }
  m.attr("dlpack_version") = py::make_tuple(dl::abi_major, dl::abi_minor);

  // --- geometry ---------------------------------------------------------------------------------
  py::class_<blfft::conv_params>(m, "ConvParams",
                                 "One convolution layer (PyTorch conventions); 1D is stored as 2D "
                                 "with a height-1 input and kernel.")
      .def(py::init<>())
      .def_readwrite("ndim", &blfft::conv_params::ndim)
      .def_readwrite("batch", &blfft::conv_params::batch)
      .def_readwrite("in_channels", &blfft::conv_params::in_channels)
      .def_readwrite("out_channels", &blfft::conv_params::out_channels)
      .def_readwrite("input", &blfft::conv_params::input)
      .def_readwrite("kernel", &blfft::conv_params::kernel)
      .def_readwrite("stride", &blfft::conv_params::stride)
      .def_readwrite("padding", &blfft::conv_params::padding)
      .def_readwrite("dilation", &blfft::conv_params::dilation)
      .def_readwrite("groups", &blfft::conv_params::groups)
      .def_readwrite("grid", &blfft::conv_params::grid)
      .def_static("conv1d", &blfft::conv_params::conv1d, py::arg("batch"), py::arg("in_channels"),
                  py::arg("out_channels"), py::arg("length"), py::arg("kernel"),
                  py::arg("stride") = 1, py::arg("padding") = 0, py::arg("dilation") = 1,
                  py::arg("groups") = 1)
      .def_static("conv2d", &blfft::conv_params::conv2d, py::arg("batch"), py::arg("in_channels"),
                  py::arg("out_channels"), py::arg("input"), py::arg("kernel"),
                  py::arg("stride") = std::array<int64_t, 2>{1, 1},
                  py::arg("padding") = std::array<int64_t, 2>{0, 0},
                  py::arg("dilation") = std::array<int64_t, 2>{1, 1}, py::arg("groups") = 1)
      .def("__repr__", [](const blfft::conv_params& p) {
        std::ostringstream os;
        os << "ConvParams(ndim=" << p.ndim << ", batch=" << p.batch
           << ", in_channels=" << p.in_channels << ", out_channels=" << p.out_channels
           << ", input=" << arr_str(p.input) << ", kernel=" << arr_str(p.kernel)
           << ", stride=" << arr_str(p.stride) << ", padding=" << arr_str(p.padding)
           << ", dilation=" << arr_str(p.dilation) << ", groups=" << p.groups
           << ", grid=" << arr_str(p.grid) << ")";
        return os.str();
      });

  py::class_<blfft::compression> comp(m, "Compression",
                                      "Which Fourier coefficients are kept: by rate, by band "
                                      "limits, or by explicit indices.");
  py::enum_<blfft::compression::kind>(comp, "Kind")
      .value("rate", blfft::compression::kind::rate)
      .value("band", blfft::compression::kind::band)
      .value("indices", blfft::compression::kind::indices);
  comp.def_static("none", &blfft::compression::none)
      .def_static("rate", &blfft::compression::rate, py::arg("rate"))
      .def_static("band", &blfft::compression::band, py::arg("i_h"), py::arg("i_w"))
      .def_static("indices", &blfft::compression::indices, py::arg("rows"), py::arg("cols"))
      .def_readonly("kind", &blfft::compression::how)
      .def_readonly("rate_value", &blfft::compression::rate_value)
      .def_readonly("limits", &blfft::compression::limits)
      .def_readonly("rows", &blfft::compression::rows)
      .def_readonly("cols", &blfft::compression::cols)
      .def("__repr__", [](const blfft::compression& c) {
        std::ostringstream os;
        switch (c.how) {
          case blfft::compression::kind::rate: os << "Compression.rate(" << c.rate_value << ")"; break;
          case blfft::compression::kind::band:
            os << "Compression.band(" << c.limits[0] << ", " << c.limits[1] << ")";
            break;
          case blfft::compression::kind::indices:
            os << "Compression.indices(<" << c.rows.size() << " rows>, <" << c.cols.size()
               << " cols>)";
            break;
        }
        return os.str();
      });

  py::class_<blfft::geometry>(m, "Geometry",
                              "Everything derived from (ConvParams, Compression): the one source "
                              "of truth for shapes, grid, kept sets and spectrum sizes.")
      .def_readonly("params", &blfft::geometry::params)
      .def_readonly("in_per_group", &blfft::geometry::in_per_group)
      .def_readonly("out_per_group", &blfft::geometry::out_per_group)
      .def_readonly("padded", &blfft::geometry::padded)
      .def_readonly("dilated", &blfft::geometry::dilated)
      .def_readonly("full_out", &blfft::geometry::full_out)
      .def_readonly("output", &blfft::geometry::output)
      .def_readonly("grid", &blfft::geometry::grid)
      .def_readonly("bins_w", &blfft::geometry::bins_w)
      .def_readonly("requested_rate", &blfft::geometry::requested_rate)
      .def_readonly("limits", &blfft::geometry::limits)
      .def_readonly("kept_rows", &blfft::geometry::kept_rows)
      .def_readonly("kept_cols", &blfft::geometry::kept_cols)
      .def_readonly("kept", &blfft::geometry::kept)
      .def_readonly("total", &blfft::geometry::total)
      .def_readonly("achieved_rate", &blfft::geometry::achieved_rate)
      .def_property_readonly("x_spectrum_size", &blfft::geometry::x_spectrum_size)
      .def_property_readonly("w_spectrum_size", &blfft::geometry::w_spectrum_size)
      .def_property_readonly("y_spectrum_size", &blfft::geometry::y_spectrum_size)
      .def_property_readonly("input_size", &blfft::geometry::input_size)
      .def_property_readonly("weight_size", &blfft::geometry::weight_size)
      .def_property_readonly("output_size", &blfft::geometry::output_size)
      .def_property_readonly("input_shape", &blfft::geometry::input_shape)
      .def_property_readonly("weight_shape", &blfft::geometry::weight_shape)
      .def_property_readonly("output_shape", &blfft::geometry::output_shape)
      .def("describe", &blfft::geometry::describe)
      .def("__repr__", [](const blfft::geometry& g) { return "<Geometry " + g.describe() + ">"; });

  m.def("make_geometry", &blfft::make_geometry, py::arg("params"),
        py::arg("compression") = blfft::compression::none(),
        "Validate (params, compression) and derive the geometry.");
  m.def("fast_size", &blfft::fast_size, py::arg("n"),
        "Smallest integer >= n whose prime factors are all in {2, 3, 5, 7}.");
  m.def("band_limit", &blfft::band_limit, py::arg("grid_length"), py::arg("rate"),
        py::arg("ndim"), "Per-axis band limit for a rate (DESIGN.md 1.4).");

  // --- energy -----------------------------------------------------------------------------------
  py::class_<blfft::energy_selection>(m, "EnergySelection")
      .def_readonly("chosen", &blfft::energy_selection::chosen)
      .def_readonly("rate", &blfft::energy_selection::rate)
      .def_readonly("limits", &blfft::energy_selection::limits)
      .def_readonly("achieved_rate", &blfft::energy_selection::achieved_rate)
      .def_readonly("energy_kept", &blfft::energy_selection::energy_kept)
      .def("__repr__", [](const blfft::energy_selection& s) {
        std::ostringstream os;
        os << "EnergySelection(rate=" << s.rate << ", limits=" << arr_str(s.limits)
           << ", achieved_rate=" << s.achieved_rate << ", energy_kept=" << s.energy_kept << ")";
        return os.str();
      });
  m.def("select_by_energy", &select_by_energy, py::arg("params"), py::arg("input"),
        py::arg("fraction"),
        "The largest compression whose kept set holds at least `fraction` of the input "
        "spectrum's energy.");
  m.def("energy_map", &energy_map, py::arg("params"), py::arg("input"),
        "Energy per rfft bin of the padded input on the grid, summed over batch and channels: a "
        "C++-owned float64 (Lh, Lw/2+1) buffer exported through DLPack (torch.from_dlpack).");

  py::class_<exported>(m, "DLPackBuffer", "A C++-owned buffer; take it with torch.from_dlpack (no copy).")
      .def("__dlpack__", &exported::dlpack, py::kw_only(), py::arg("stream") = py::none(),
           py::arg("max_version") = py::none(), py::arg("dl_device") = py::none(),
           py::arg("copy") = py::none())
      .def("__dlpack_device__", &exported::dlpack_device)
      .def_property_readonly("shape", &exported::shape);

  // --- compute ----------------------------------------------------------------------------------
  m.def("forward", &forward, py::arg("params"), py::arg("compression"), py::arg("input"),
        py::arg("weight"), py::arg("bias"), py::arg("output"), py::arg("x_spectrum") = py::none(),
        py::arg("w_spectrum") = py::none(),
        "output = band-limited conv(input, weight) + bias; optionally stores the compressed "
        "spectra into the caller's x_spectrum / w_spectrum.");
  m.def("input_spectrum", &input_spectrum, py::arg("params"), py::arg("compression"),
        py::arg("input"), py::arg("x_spectrum"));
  m.def("weight_spectrum", &weight_spectrum, py::arg("params"), py::arg("compression"),
        py::arg("weight"), py::arg("w_spectrum"));
  m.def("forward_spectra", &forward_spectra, py::arg("params"), py::arg("compression"),
        py::arg("x_spectrum"), py::arg("w_spectrum"), py::arg("bias"), py::arg("output"));
  m.def("backward", &backward, py::arg("params"), py::arg("compression"), py::arg("grad_output"),
        py::arg("x_spectrum"), py::arg("w_spectrum"), py::arg("grad_input"),
        py::arg("grad_weight"), py::arg("grad_bias"),
        "All gradients from one transform of grad_output; each of grad_input, grad_weight, "
        "grad_bias may be None to skip it.");
  m.def("dlpack_info", &dlpack_info, py::arg("tensor"),
        "What the binding reads from a DLPack tensor (consumes a capsule).");

  // --- runtime ----------------------------------------------------------------------------------
  m.def("plan_cache_size", &blfft::plan_cache_size);
  m.def("clear_plan_cache", &blfft::clear_plan_cache);
  m.def("set_num_threads", &blfft::set_num_threads, py::arg("n"),
        "Threads used by the CPU backend (0: OpenMP's default).");
  m.def("get_num_threads", &blfft::get_num_threads);
}
