# CUDA detection for BLFFT_CUDA = AUTO | ON | OFF.
#
# Detection only: the CUDA backend lives in cuda/ and is built once cuda/CMakeLists.txt exists.
# This file decides whether it *could* be built: an nvcc that compiles, and cuFFT (from a CUDA
# toolkit, or from the `nvidia-cufft` pip wheel, whose headers and libcufft.so.12 lie under
# site-packages/nvidia/cu13/; where it is looked for: below).
#
# Out: BLFFT_CUDA_ENABLED  ON when all were found (and BLFFT_CUDA is not OFF)
#      BLFFT_CUDA_REASON   one line for the summary
#      BLFFT_CUFFT_INCLUDE_DIR, BLFFT_CUFFT_LIBRARY (cache)  where cuFFT was found
#      BLFFT_CUBLAS_INCLUDE_DIR, BLFFT_CUBLAS_LIBRARY (cache)  where cuBLAS was found
#      target blfft_deps::cufft (when found)

set(BLFFT_CUDA_ENABLED OFF)
set(BLFFT_CUDA_REASON "")

if(BLFFT_CUDA STREQUAL "OFF")
  set(BLFFT_CUDA_REASON "disabled (BLFFT_CUDA=OFF)")
  return()
endif()

# nvcc is installed in /usr/local/cuda/bin, which is often not on PATH. Point the check there
# unless the user chose a compiler (CMAKE_CUDA_COMPILER or CUDACXX). Through the environment, not
# the cache, so that check_language still tries it (it skips the check when the variable is set).
if(NOT DEFINED CMAKE_CUDA_COMPILER AND NOT DEFINED ENV{CUDACXX}
   AND EXISTS "/usr/local/cuda/bin/nvcc")
  set(ENV{CUDACXX} "/usr/local/cuda/bin/nvcc")
endif()

include(CheckLanguage)
check_language(CUDA)

set(_blfft_cuda_missing "")
if(NOT CMAKE_CUDA_COMPILER)
  list(APPEND _blfft_cuda_missing "nvcc (set CMAKE_CUDA_COMPILER or CUDACXX)")
else()
  # Toolkit root from the compiler: <root>/bin/nvcc.
  get_filename_component(_blfft_nvcc_real "${CMAKE_CUDA_COMPILER}" REALPATH)
  get_filename_component(_blfft_cuda_root "${_blfft_nvcc_real}" DIRECTORY)
  get_filename_component(_blfft_cuda_root "${_blfft_cuda_root}" DIRECTORY)
endif()

# cuFFT, looked for in this order:
#   1. BLFFT_CUFFT_ROOT (CMake variable, else environment variable): a folder holding
#      include/cufft.h and lib*/libcufft.so*, e.g. a venv's site-packages/nvidia/cu13. The only
#      way to point a wheel build at a particular environment.
#   2. the CUDA toolkit of nvcc, $CUDA_HOME, $CUDA_PATH;
#   3. the nvidia-cufft package of the build environment: asked from the interpreter the Python
#      package is built with (Python_EXECUTABLE, passed by scikit-build-core). In an isolated build
#      (pip install ., python -m build) that is the pinned build requirement that
#      tools/build_backend/blfft_build_backend.py adds where nvcc exists; with
#      --no-build-isolation it is the environment the user chose to build in;
#   4. developer builds only (not scikit-build-core's): the source tree's .venv, where
#      tools/setup.sh installs nvidia-cufft, and the active $VIRTUAL_ENV.
# A wheel build (SKBUILD) reads nothing from .venv or $VIRTUAL_ENV unless asked through
# BLFFT_CUFFT_ROOT, and searches again at every configure (a reused build folder may remember a
# build environment that is gone), so that two builds of one source give the same wheel.
set(BLFFT_CUFFT_ROOT "" CACHE PATH "Folder holding include/cufft.h and lib/libcufft.so")
set(_blfft_cufft_root "${BLFFT_CUFFT_ROOT}")
if(NOT _blfft_cufft_root AND DEFINED ENV{BLFFT_CUFFT_ROOT})
  set(_blfft_cufft_root "$ENV{BLFFT_CUFFT_ROOT}")
endif()
set(_blfft_cuda_hints "")
foreach(_root IN ITEMS "${_blfft_cufft_root}" "${_blfft_cuda_root}" "$ENV{CUDA_HOME}"
                        "$ENV{CUDA_PATH}")
  if(_root)
    list(APPEND _blfft_cuda_hints "${_root}")
  endif()
endforeach()

# _blfft_find_cuda_lib(<NAME> LABEL <label> HEADER <header> WHEEL <sub> NAMES <library names...>
#                      MISSING <text>)
# Sets the cache variables BLFFT_<NAME>_INCLUDE_DIR (the folder of <header>) and
# BLFFT_<NAME>_LIBRARY, searched again at every wheel configure (SKBUILD) or when the cached path
# is gone. Looks in _blfft_cuda_hints, to which it first appends (and leaves appended, so that
# cuBLAS is also looked for where cuFFT was) the build environment's wheel folder: the first
# sys.path entry with nvidia/cu13 (CUDA 13 wheels) or nvidia/<sub> (CUDA 12 ones) holding
# include/<header>; and, in developer builds, the .venv's and $VIRTUAL_ENV's. Neither when
# BLFFT_CUFFT_ROOT is given. Appends <text> to _blfft_cuda_missing when not found.
function(_blfft_find_cuda_lib name)
  cmake_parse_arguments(PARSE_ARGV 1 _arg "" "LABEL;HEADER;WHEEL;MISSING" "NAMES")
  foreach(_var IN ITEMS BLFFT_${name}_INCLUDE_DIR BLFFT_${name}_LIBRARY)
    if(DEFINED SKBUILD OR (${_var} AND NOT EXISTS "${${_var}}"))
      unset(${_var} CACHE)
    endif()
  endforeach()
  set(_hints ${_blfft_cuda_hints})
  if(Python_EXECUTABLE AND NOT _blfft_cufft_root)
    execute_process(COMMAND "${Python_EXECUTABLE}" -c [=[
import os, sys
sub, header = sys.argv[1:3]
for p in sys.path:
    for s in ("cu13", sub):
        d = os.path.join(p or ".", "nvidia", s)
        if os.path.isfile(os.path.join(d, "include", header)):
            print(os.path.realpath(d)); sys.exit(0)
]=] "${_arg_WHEEL}" "${_arg_HEADER}"
                    OUTPUT_VARIABLE _env_dir OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET)
    if(_env_dir)
      list(APPEND _hints "${_env_dir}")
    endif()
  endif()
  if(NOT DEFINED SKBUILD AND NOT _blfft_cufft_root)
    foreach(_venv IN ITEMS "${PROJECT_SOURCE_DIR}/.venv" "$ENV{VIRTUAL_ENV}")
      if(_venv)
        file(GLOB _wheel_dirs LIST_DIRECTORIES true
             "${_venv}/lib/python3*/site-packages/nvidia/cu13"
             "${_venv}/lib/python3*/site-packages/nvidia/${_arg_WHEEL}")
        list(APPEND _hints ${_wheel_dirs})
      endif()
    endforeach()
  endif()
  set(_blfft_cuda_hints ${_hints} PARENT_SCOPE)
  find_path(BLFFT_${name}_INCLUDE_DIR NAMES ${_arg_HEADER} HINTS ${_hints}
            PATH_SUFFIXES include targets/x86_64-linux/include targets/sbsa-linux/include
            DOC "${_arg_LABEL} headers")
  find_library(BLFFT_${name}_LIBRARY NAMES ${_arg_NAMES} HINTS ${_hints}
               PATH_SUFFIXES lib64 lib DOC "${_arg_LABEL} library")
  if(NOT BLFFT_${name}_INCLUDE_DIR OR NOT BLFFT_${name}_LIBRARY)
    set(_blfft_cuda_missing ${_blfft_cuda_missing} "${_arg_MISSING}" PARENT_SCOPE)
  endif()
endfunction()

# The wheels ship only the versioned file (libcufft.so.12 for CUDA 13, .so.11 for CUDA 12).
_blfft_find_cuda_lib(CUFFT LABEL cuFFT HEADER cufft.h WHEEL cufft
                     NAMES cufft libcufft.so.12 libcufft.so.11
                     MISSING "cuFFT (a CUDA toolkit with cuFFT, nvidia-cufft in the build \
environment, or set BLFFT_CUFFT_ROOT)")
# cuBLAS (the mixing on tensor cores): the same places, the nvidia-cublas wheel next to
# nvidia-cufft (site-packages/nvidia/cu13: cublas_v2.h, libcublas.so.13; CUDA 12's wheel:
# nvidia/cublas, libcublas.so.12), or the toolkit.
_blfft_find_cuda_lib(CUBLAS LABEL cuBLAS HEADER cublas_v2.h WHEEL cublas
                     NAMES cublas libcublas.so.13 libcublas.so.12
                     MISSING "cuBLAS (a CUDA toolkit with cuBLAS, nvidia-cublas in the build \
environment, or set BLFFT_CUFFT_ROOT to a folder with both)")

if(_blfft_cuda_missing)
  list(JOIN _blfft_cuda_missing "; " _blfft_missing_text)
  if(BLFFT_CUDA STREQUAL "ON")
    message(FATAL_ERROR "BLFFT_CUDA=ON but not found: ${_blfft_missing_text}. "
                        "Use BLFFT_CUDA=AUTO or OFF to build without CUDA.")
  endif()
  set(BLFFT_CUDA_REASON "off: not found: ${_blfft_missing_text}")
else()
  set(BLFFT_CUDA_ENABLED ON)
  if(NOT TARGET blfft_deps::cufft)
    add_library(blfft_deps::cufft INTERFACE IMPORTED)
    set_target_properties(blfft_deps::cufft PROPERTIES
                          INTERFACE_INCLUDE_DIRECTORIES "${BLFFT_CUFFT_INCLUDE_DIR}"
                          INTERFACE_LINK_LIBRARIES "${BLFFT_CUFFT_LIBRARY}")
  endif()
  string(CONCAT BLFFT_CUDA_REASON "available: nvcc ${CMAKE_CUDA_COMPILER}, "
                "cuFFT ${BLFFT_CUFFT_LIBRARY}, cuBLAS ${BLFFT_CUBLAS_LIBRARY}")
endif()

# Reproducible wheels: nvcc names anonymous namespaces and some symbols from random numbers, so
# two builds of one source differ in blfft._cuda unless the seed is fixed. Only the wheel build
# (SKBUILD), whose one CUDA source is cuda/kernels.cu (nvcc wants one seed per file).
if(BLFFT_CUDA_ENABLED AND DEFINED SKBUILD)
  add_compile_options("$<$<COMPILE_LANGUAGE:CUDA>:-frandom-seed=blfft_kernels_cu>")
endif()
