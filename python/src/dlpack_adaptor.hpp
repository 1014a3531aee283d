#pragma once
// The DLPack adaptor shared by blfft's binding modules (blfft._core, the CPU backend, and
// blfft._cuda, the CUDA backend): one source of truth for reading tensors that cross from Python
// (DLPack capsules or objects with __dlpack__), for the checks every tensor argument goes through,
// for C++-owned buffers handed back to Python, and for the mapping of blfft::error to Python
// exceptions. Header-only; each module compiles its own copy (hidden visibility).
//
// What differs between the modules is the device policy: check_common takes the device check to
// apply to every tensor of a call (host memory for _core, one CUDA device for _cuda).

#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <memory>
#include <new>
#include <optional>
#include <sstream>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "blfft/error.hpp"
#include "blfft/tensor.hpp"

namespace blfft_py {

namespace py = pybind11;

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
  void* data;  // base pointer; the first element is at data + byte_offset
  device dev;
  int32_t ndim;
  data_type dtype;
  int64_t* shape;    // ndim entries
  int64_t* strides;  // ndim entries, in elements; may be null: C-contiguous
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

inline const char* const name_legacy = "dltensor";
inline const char* const name_legacy_used = "used_dltensor";
inline const char* const name_versioned = "dltensor_versioned";
inline const char* const name_versioned_used = "used_dltensor_versioned";

}  // namespace dl

using blfft::error;
using blfft::error_code;

inline std::string device_name(const dl::device& d) {
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

inline std::string dtype_name(const dl::data_type& t) {
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

/// The element type of a tensor argument. f16 and bf16 (torch.float16, torch.bfloat16) are taken
/// by the modules whose backends read and write them (blfft._cuda), computed in float32.
enum class scalar { f32, f64, f16, bf16 };

/// The type a tensor type is computed in, which is also that of its call's spectra.
inline scalar compute_of(scalar s) {
  return s == scalar::f64 ? scalar::f64 : scalar::f32;
}

/// A tensor borrowed from its producer for the duration of one call. Following the DLPack
/// protocol, the capsule is renamed to "used_..." (so the producer's capsule destructor leaves it
/// alone) and this object calls the producer's deleter when it goes away. It is created and
/// destroyed with the GIL held; the raw view it exposes may be used without the GIL.
class imported {
 public:
  /// `stream` is what a consumer passes to obj.__dlpack__(stream=...) (DLPack's stream
  /// protocol: None for a CPU consumer; for a CUDA consumer the stream it will use, 1 for the
  /// legacy default stream): the producer makes its pending work visible to that stream. Unused
  /// for capsules, which were made already.
  imported(py::handle obj, const char* name, const py::object& stream = py::none()) : name_(name) {
    py::object capsule;
    if (PyCapsule_CheckExact(obj.ptr())) {
      capsule = py::reinterpret_borrow<py::object>(obj);
    } else if (py::hasattr(obj, "__dlpack__")) {
      capsule = request_capsule(obj, stream);
    } else {
      throw py::type_error(std::string("blfft: ") + name +
                           " must be a tensor (an object with __dlpack__) or a DLPack capsule, "
                           "got " +
                           std::string(py::str(py::type::of(obj))));
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
  static py::object request_capsule(py::handle obj, const py::object& stream) {
    // Ask for a versioned capsule; producers that predate DLPack 1.0 do not know max_version.
    py::object dlpack = obj.attr("__dlpack__");
    try {
      if (stream.is_none())
        return dlpack(py::arg("max_version") = py::make_tuple(dl::abi_major, dl::abi_minor));
      return dlpack(py::arg("stream") = stream,
                    py::arg("max_version") = py::make_tuple(dl::abi_major, dl::abi_minor));
    } catch (py::error_already_set& e) {
      if (!e.matches(PyExc_TypeError)) throw;
    }
    if (stream.is_none()) return dlpack();
    return dlpack(py::arg("stream") = stream);
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

[[noreturn]] inline void fail(error_code code, const std::string& msg) {
  throw error(code, "blfft: " + msg);
}

/// The element type of `a`: float32, float64, float16 or bfloat16 (one lane); anything else is
/// refused, naming the types the module takes (`sixteen`: also the 16-bit ones).
inline scalar scalar_of(const imported& a, bool sixteen) {
  const auto& t = a.raw().dtype;
  if (t.lanes == 1 && t.code == dl::code_float) {
    if (t.bits == 32) return scalar::f32;
    if (t.bits == 64) return scalar::f64;
    if (t.bits == 16) return scalar::f16;
  }
  if (t.lanes == 1 && t.code == dl::code_bfloat && t.bits == 16) return scalar::bf16;
  fail(error_code::type_mismatch,
       std::string(a.name()) +
           (sixteen ? " must be float32, float64, float16 or bfloat16, got "
                    : " must be float32 or float64, got ") +
           dtype_name(t));
}

/// One tensor argument of a call, as check_common takes it: a tensor (x, w, bias, y, a gradient)
/// or a spectrum (spectrum_arg). A null pointer is an argument not given.
struct call_arg {
  call_arg(const imported* a) : a(a) {}  // NOLINT(google-explicit-constructor): brace lists
  call_arg(const imported* a, bool spectrum) : a(a), spectrum(spectrum) {}
  const imported* a;
  bool spectrum = false;
};

/// Checks every tensor of one call: the module's device policy (`require_device(const
/// imported&)`, called on each tensor in argument order: host memory for _core, one CUDA device
/// for _cuda), the dtypes, outputs writable and not copies. Dtypes: the tensors share one type,
/// float32 or float64, or, where `sixteen` (the module's backend reads and writes them:
/// blfft._cuda's convolutions), float16 or bfloat16; the spectra have the type the tensors are
/// computed in (float32 for 16-bit tensors: spectra stay float32 in the kernels). Returns the
/// tensors' type.
template <class DeviceCheck>
scalar check_common(std::initializer_list<call_arg> inputs, std::initializer_list<call_arg> outputs,
                    DeviceCheck&& require_device, bool sixteen = false) {
  const imported* first = nullptr;  // the first tensor (not a spectrum): its type is the call's
  scalar s = scalar::f32;
  auto visit = [&](const call_arg& c, bool output) {
    if (c.a == nullptr) return;
    const imported& a = *c.a;
    require_device(a);
    const scalar t = scalar_of(a, sixteen && !c.spectrum);  // refuses others in argument order
    if (t != compute_of(t) && !sixteen && !c.spectrum)
      fail(error_code::type_mismatch,
           std::string(a.name()) + " must be float32 or float64, got " + dtype_name(a.raw().dtype) +
               " (16-bit tensors are taken by blfft._cuda's convolution calls only; blfft's "
               "Python layer up-casts them for the others)");
    if (!c.spectrum && first == nullptr) {
      first = &a;
      s = t;
    }
    if (output && a.read_only())
      fail(error_code::invalid_argument, std::string(a.name()) + " is read-only");
    if (output && a.copied())
      fail(error_code::invalid_argument,
           std::string(a.name()) + " was exported as a copy; results written to it would be lost");
  };
  for (const call_arg& c : inputs) visit(c, false);
  for (const call_arg& c : outputs) visit(c, true);
  if (first == nullptr)  // every entry point has a required tensor
    fail(error_code::invalid_argument, "a call needs a tensor besides its spectra");
  for (const auto* list : {&inputs, &outputs})
    for (const call_arg& c : *list) {
      if (c.a == nullptr || c.a == first) continue;
      const scalar t = scalar_of(*c.a, sixteen && !c.spectrum);
      if (t == (c.spectrum ? compute_of(s) : s)) continue;
      const char* note = c.spectrum && s != compute_of(s)
                             ? " (the spectra of float16 / bfloat16 tensors are float32)"
                             : "";
      fail(error_code::type_mismatch, std::string(c.a->name()) + " is " +
                                          dtype_name(c.a->raw().dtype) + " but " + first->name() +
                                          " is " + dtype_name(first->raw().dtype) + note);
    }
  return s;
}

template <class T>
blfft::tensor_view<T> view_of(const imported& a) {
  const auto& s = a.shape();
  if (s.size() > static_cast<size_t>(blfft::max_rank))
    fail(error_code::shape_mismatch, std::string(a.name()) + " has rank " +
                                         std::to_string(s.size()) + "; blfft takes at most " +
                                         std::to_string(blfft::max_rank));
  const auto& st = a.strides();
  return blfft::tensor_view<T>(static_cast<T*>(a.data()),
                               blfft::dim_array(s.data(), s.data() + s.size()),
                               blfft::dim_array(st.data(), st.data() + st.size()));
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

inline void maybe_import(opt_imported& slot, const py::object& obj, const char* name) {
  if (!obj.is_none()) slot.emplace(obj, name);
}

inline const imported* ptr(const opt_imported& o) {
  return o ? &*o : nullptr;
}
/// A spectrum argument for check_common (its dtype is the one the call's tensors compute in).
inline call_arg spectrum_arg(const opt_imported& o) {
  return {ptr(o), true};
}

/// A spectrum as the plans take it: a flat buffer of exactly `size` scalars (flat_of), with its
/// length, which the plan checks once more.
template <class T>
blfft::spectrum_view<T> spectrum_of(const imported& a, int64_t size) {
  return {flat_of<T>(a, size), size};
}
/// An optional spectrum: None is "not given".
template <class T>
blfft::spectrum_view<T> spectrum_or_none(const opt_imported& a, int64_t size) {
  return a ? spectrum_of<T>(*a, size) : blfft::spectrum_view<T>{};
}

/// What the binding reads from a DLPack tensor: for tests and debugging.
inline py::dict dlpack_info(const py::object& obj) {
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
// Errors: blfft::error -> ValueError (bad arguments, shapes, overflow), TypeError (dtype, device,
// memory kind), MemoryError (out_of_memory: an allocation failed or a buffer would pass the size
// cap), blfft.BlfftError (unsupported, backend failures; `code` names the error_code).
// std::bad_alloc from anywhere in the core -> MemoryError too. The message is kept.
// ------------------------------------------------------------------------------------------------

/// The BlfftError class of this module (owned by blfft._core; borrowed by the other modules so
/// that `except blfft.BlfftError` catches errors from every backend).
inline PyObject*& error_type() {
  static PyObject* type = nullptr;
  return type;
}

/// Registers the translation of blfft::error for the calling module only (a module-local
/// translator: each module maps the errors its own copy of the library throws).
inline void install_error_translator(py::handle blfft_error) {
  error_type() = blfft_error.inc_ref().ptr();  // kept for the life of the process
  py::register_local_exception_translator([](std::exception_ptr e) {
    try {
      if (e) std::rethrow_exception(e);
    } catch (const blfft::error& err) {
      switch (err.code()) {
        case blfft::error_code::invalid_argument:
        case blfft::error_code::shape_mismatch:
        case blfft::error_code::overflow: PyErr_SetString(PyExc_ValueError, err.what()); return;
        case blfft::error_code::type_mismatch: PyErr_SetString(PyExc_TypeError, err.what()); return;
        case blfft::error_code::out_of_memory:
          PyErr_SetString(PyExc_MemoryError, err.what());
          return;
        default: {
          PyObject* type = error_type();
          PyObject* inst = PyObject_CallFunction(type, "s", err.what());
          if (inst == nullptr) return;  // the call's own error is set
          PyObject* code = PyUnicode_FromString(blfft::error_code_name(err.code()));
          if (code != nullptr) {
            PyObject_SetAttrString(inst, "code", code);
            Py_DECREF(code);
          }
          PyErr_SetObject(type, inst);
          Py_DECREF(inst);
          return;
        }
      }
    } catch (const std::bad_alloc& err) {
      // Also std::bad_array_new_length. pybind11's own translation would say only
      // "std::bad_alloc"; this names blfft.
      PyErr_SetString(PyExc_MemoryError,
                      (std::string("blfft: out of memory (") + err.what() + ")").c_str());
      return;
    }
  });
}

/// Registers `exported` as <module>.DLPackBuffer. module_local: each binding module registers the
/// same C++ type for itself.
inline void register_dlpack_buffer(py::module_& m, const char* doc) {
  py::class_<exported>(m, "DLPackBuffer", doc, py::module_local())
      .def("__dlpack__", &exported::dlpack, py::kw_only(), py::arg("stream") = py::none(),
           py::arg("max_version") = py::none(), py::arg("dl_device") = py::none(),
           py::arg("copy") = py::none())
      .def("__dlpack_device__", &exported::dlpack_device)
      .def_property_readonly("shape", &exported::shape);
}

}  // namespace blfft_py
