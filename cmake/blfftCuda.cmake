# CUDA detection for BLFFT_CUDA = AUTO | ON | OFF.
#
# Detection only: the CUDA backend lives in cuda/ and is built once cuda/CMakeLists.txt exists.
# This file decides whether it *could* be built: an nvcc that compiles, and cuFFT (from a CUDA
# toolkit, or from the `nvidia-cufft` pip wheel, whose headers and libcufft.so.12 lie under
# site-packages/nvidia/cu13/).
#
# Out: BLFFT_CUDA_ENABLED  ON when both were found (and BLFFT_CUDA is not OFF)
#      BLFFT_CUDA_REASON   one line for the summary
#      BLFFT_CUFFT_INCLUDE_DIR, BLFFT_CUFFT_LIBRARY (cache)  where cuFFT was found
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

# cuFFT: a CUDA toolkit's, else the pip wheel's in this project's .venv or the active venv.
# BLFFT_CUFFT_ROOT points at either kind of folder (one with include/cufft.h and lib*/).
set(BLFFT_CUFFT_ROOT "" CACHE PATH "Folder holding include/cufft.h and lib/libcufft.so")
set(_blfft_cufft_hints "")
foreach(_root IN ITEMS "${BLFFT_CUFFT_ROOT}" "${_blfft_cuda_root}" "$ENV{CUDA_HOME}"
                        "$ENV{CUDA_PATH}")
  if(_root)
    list(APPEND _blfft_cufft_hints "${_root}")
  endif()
endforeach()
foreach(_venv IN ITEMS "$ENV{VIRTUAL_ENV}" "${PROJECT_SOURCE_DIR}/.venv")
  if(_venv)
    file(GLOB _blfft_wheel_dirs LIST_DIRECTORIES true
         "${_venv}/lib/python3*/site-packages/nvidia/cu13"
         "${_venv}/lib/python3*/site-packages/nvidia/cufft")
    list(APPEND _blfft_cufft_hints ${_blfft_wheel_dirs})
  endif()
endforeach()
# The interpreter the Python package is built for (scikit-build-core passes Python_EXECUTABLE):
# its site-packages, where torch's CUDA wheels or `pip install nvidia-cufft` put cuFFT.
if(Python_EXECUTABLE)
  execute_process(COMMAND "${Python_EXECUTABLE}" -c
                          "import sysconfig; print(sysconfig.get_paths()['platlib'])"
                  OUTPUT_VARIABLE _blfft_platlib OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET)
  if(_blfft_platlib)
    file(GLOB _blfft_wheel_dirs LIST_DIRECTORIES true "${_blfft_platlib}/nvidia/cu13"
         "${_blfft_platlib}/nvidia/cufft")
    list(APPEND _blfft_cufft_hints ${_blfft_wheel_dirs})
  endif()
endif()

find_path(BLFFT_CUFFT_INCLUDE_DIR NAMES cufft.h HINTS ${_blfft_cufft_hints}
          PATH_SUFFIXES include targets/x86_64-linux/include targets/sbsa-linux/include
          DOC "cuFFT headers")
# The wheels ship only the versioned file (libcufft.so.12 for CUDA 13, .so.11 for CUDA 12).
find_library(BLFFT_CUFFT_LIBRARY NAMES cufft libcufft.so.12 libcufft.so.11
             HINTS ${_blfft_cufft_hints} PATH_SUFFIXES lib64 lib
             DOC "cuFFT library")
if(NOT BLFFT_CUFFT_INCLUDE_DIR OR NOT BLFFT_CUFFT_LIBRARY)
  list(APPEND _blfft_cuda_missing
       "cuFFT (pip install nvidia-cufft into .venv, a CUDA toolkit with cuFFT, or set BLFFT_CUFFT_ROOT)")
endif()

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
  set(BLFFT_CUDA_REASON "available: nvcc ${CMAKE_CUDA_COMPILER}, cuFFT ${BLFFT_CUFFT_LIBRARY}")
endif()
