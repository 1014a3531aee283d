# Finds what libblfft links against and creates the imported targets it links to:
#   PkgConfig::FFTW3F, PkgConfig::FFTW3   FFTW3, single and double precision (pkg-config)
#   OpenMP::OpenMP_CXX                    OpenMP
#   blfft_deps::blas                      a Fortran BLAS (sgemm_/dgemm_): scipy-openblas32 (unless
#                                         -DBLFFT_SCIPY_OPENBLAS=OFF), else BLIS serial, else
#                                         OpenBLAS's OpenMP flavour, else FindBLAS
#
# Used twice, so that both places agree: by the top-level CMakeLists.txt, and by an installed
# blfftConfig.cmake of a *static* libblfft, whose consumers must link these too (a shared libblfft
# carries its dependencies itself).
#
# In:  BLFFT_DEPS_REQUIRED  true: fail the configure on anything missing (the build);
#                           false: set BLFFT_DEPS_MISSING instead (the installed config).
# Out: BLFFT_DEPS_MISSING   what was not found (empty when all is there)
#      BLFFT_BLAS_FILE      the BLAS library file when found directly (BLFFT_BLAS_LIBRARY, the
#                           cache variable, is the user's override)
#      BLFFT_BLAS_VENDOR    a word for the summary: "scipy-openblas32 (...)", "BLIS (serial)",
#                           "OpenBLAS (OpenMP flavour)", "FindBLAS: ..."
#      BLFFT_BLAS_RUNTIME_DIR  a folder that must be on the RUNPATH of whatever links the BLAS
#                           library (it is not a default loader folder); empty when none

set(BLFFT_DEPS_MISSING "")
if(BLFFT_DEPS_REQUIRED)
  set(_blfft_req REQUIRED)
else()
  set(_blfft_req QUIET)
endif()

# --- FFTW3 -----------------------------------------------------------------------------------
find_package(PkgConfig ${_blfft_req})
if(PkgConfig_FOUND)
  pkg_check_modules(FFTW3F ${_blfft_req} IMPORTED_TARGET fftw3f)
  pkg_check_modules(FFTW3 ${_blfft_req} IMPORTED_TARGET fftw3)
endif()
if(NOT TARGET PkgConfig::FFTW3F OR NOT TARGET PkgConfig::FFTW3)
  list(APPEND BLFFT_DEPS_MISSING "FFTW3 (pkg-config modules fftw3f and fftw3)")
endif()

# --- OpenMP ----------------------------------------------------------------------------------
find_package(OpenMP ${_blfft_req} COMPONENTS CXX)
if(NOT TARGET OpenMP::OpenMP_CXX)
  list(APPEND BLFFT_DEPS_MISSING "OpenMP (C++)")
endif()

# --- BLAS ------------------------------------------------------------------------------------
# blfft calls sgemm_/dgemm_ from *inside* its own OpenMP parallel regions (one small GEMM per
# kept frequency, many frequencies in parallel), so the BLAS must run each call on the calling
# thread, and be safe to call from several threads at once. Which BLAS is fast depends on whether
# its kernels know the CPU (README, "These numbers need a BLAS that knows the CPU"):
# 1. scipy-openblas32 (PyPI; the OpenBLAS build numpy and scipy ship), pinned to 0.3.30.443.1
#    (pyproject.toml; OpenBLAS 0.3.31-0.3.34 get concurrent products of different shapes wrong
#    on AVX-512 CPUs: tests/cpp/test_blas_concurrency.cpp, bench/NOTES.md): an OpenBLAS built
#    with DYNAMIC_ARCH, so it picks its kernels for the CPU at load time (SkylakeX on Intel
#    Emerald Rapids, Haswell on AMD Zen 5, where Debian's OpenBLAS 0.3.21 and BLIS 0.9 fall back
#    to SSE3 / generic kernels; bench/NOTES.md). Its symbols carry the prefix scipy_
#    (BLAS_SYMBOL_PREFIX); it is the pthreads flavour, which src/blas.cpp sets to one thread.
#    Taken from BLFFT_SCIPY_OPENBLAS_DIR, else from the Python package as the building
#    interpreter (a wheel build), the source tree's .venv or $VIRTUAL_ENV sees it.
# 2. BLIS, serial build (Debian libblis-serial-dev): single-threaded by construction.
# 3. OpenBLAS, OpenMP build: one thread inside an active parallel region; src/blas.cpp holds the
#    calls made outside one to the calling thread (Debian's pthread build libopenblas.so.0 would
#    start its own threads inside ours; its serial build is not thread-safe: wrong products from
#    16 threads at once).
# 4. Whatever FindBLAS finds.
# The first three live in folders the loader does not search, hence BLFFT_BLAS_RUNTIME_DIR and
# the RUNPATHs set from it. -DBLFFT_BLAS_LIBRARY=<file> overrides the search (a library named
# *scipy_openblas* is called with the prefix).
# Build folders configured while it was off by default (its old doc string) keep no choice of the
# user's: forget it, so that they take the new default.
get_property(_blfft_doc CACHE BLFFT_SCIPY_OPENBLAS PROPERTY HELPSTRING)
if(_blfft_doc STREQUAL "Look for scipy-openblas32 first (OFF: it failed tests/py/test_threads.py's hammer)")
  unset(BLFFT_SCIPY_OPENBLAS CACHE)
endif()
unset(_blfft_doc)
option(BLFFT_SCIPY_OPENBLAS "Look for scipy-openblas32 first (OFF: BLIS and the others only)" ON)
set(BLFFT_SCIPY_OPENBLAS_DIR "" CACHE PATH
    "Folder of libscipy_openblas.so (or the scipy_openblas32 package folder); empty: ask Python")
set(BLFFT_BLAS_RUNTIME_DIR "")
unset(BLFFT_BLAS_FILE)  # (find_library(... NO_CACHE) searches only while it is undefined)
if(NOT TARGET blfft_deps::blas)
  # An older configure stored its search result in BLFFT_BLAS_LIBRARY (this doc string): that is
  # no choice of the user's, so search again.
  get_property(_blfft_doc CACHE BLFFT_BLAS_LIBRARY PROPERTY HELPSTRING)
  if(_blfft_doc STREQUAL "BLAS library (BLIS serial, or OpenBLAS OpenMP) that provides sgemm_/dgemm_")
    unset(BLFFT_BLAS_LIBRARY CACHE)
  endif()
  unset(_blfft_doc)
  if(BLFFT_BLAS_LIBRARY)
    set(BLFFT_BLAS_FILE "${BLFFT_BLAS_LIBRARY}")
  else()
    # Searched anew at every configure (NO_CACHE): a wheel build's environment is temporary.
    set(_blfft_sob_dir "${BLFFT_SCIPY_OPENBLAS_DIR}")
    if(NOT BLFFT_SCIPY_OPENBLAS)
      set(_blfft_sob_dir "")
    elseif(NOT _blfft_sob_dir)
      set(_blfft_pythons "")
      foreach(_py IN ITEMS "${Python_EXECUTABLE}" "${Python3_EXECUTABLE}")
        if(_py)
          list(APPEND _blfft_pythons "${_py}")
        endif()
      endforeach()
      if(NOT DEFINED SKBUILD)
        foreach(_venv IN ITEMS "${PROJECT_SOURCE_DIR}/.venv" "$ENV{VIRTUAL_ENV}")
          if(_venv AND EXISTS "${_venv}/bin/python")
            list(APPEND _blfft_pythons "${_venv}/bin/python")
          endif()
        endforeach()
      endif()
      foreach(_py IN LISTS _blfft_pythons)
        execute_process(COMMAND "${_py}" -c "import scipy_openblas32 as s; print(s.get_lib_dir())"
                        OUTPUT_VARIABLE _blfft_sob_dir OUTPUT_STRIP_TRAILING_WHITESPACE
                        ERROR_QUIET)
        if(_blfft_sob_dir)
          break()
        endif()
      endforeach()
      unset(_blfft_pythons)
    endif()
    if(_blfft_sob_dir)
      find_library(BLFFT_BLAS_FILE NAMES scipy_openblas HINTS "${_blfft_sob_dir}"
                   PATH_SUFFIXES lib NO_DEFAULT_PATH NO_CACHE)
    endif()
    unset(_blfft_sob_dir)
    if(CMAKE_LIBRARY_ARCHITECTURE AND NOT BLFFT_BLAS_FILE)
      find_library(BLFFT_BLAS_FILE NAMES blis NO_CACHE NO_DEFAULT_PATH
                   PATHS /usr/lib/${CMAKE_LIBRARY_ARCHITECTURE}/blis-serial)
    endif()
    if(CMAKE_LIBRARY_ARCHITECTURE AND NOT BLFFT_BLAS_FILE)
      find_library(BLFFT_BLAS_FILE NAMES openblas NO_CACHE NO_DEFAULT_PATH
                   PATHS /usr/lib/${CMAKE_LIBRARY_ARCHITECTURE}/openblas-openmp)
    endif()
  endif()
  if(BLFFT_BLAS_FILE)
    add_library(blfft_deps::blas INTERFACE IMPORTED)
    set_target_properties(blfft_deps::blas PROPERTIES INTERFACE_LINK_LIBRARIES "${BLFFT_BLAS_FILE}")
    get_filename_component(_blfft_blas_name "${BLFFT_BLAS_FILE}" NAME)
    if(_blfft_blas_name MATCHES "scipy_openblas")
      set(BLFFT_BLAS_VENDOR "scipy-openblas32 (OpenBLAS, DYNAMIC_ARCH, pthreads, 1 thread)")
      # BLFFT_BLAS_OPENBLAS_PTHREADS: src/blas.cpp sets its thread count to 1.
      set_target_properties(blfft_deps::blas PROPERTIES INTERFACE_COMPILE_DEFINITIONS
                            "BLAS_SYMBOL_PREFIX=scipy_;BLFFT_BLAS_OPENBLAS_PTHREADS")
    elseif(_blfft_blas_name MATCHES "blis")
      set(BLFFT_BLAS_VENDOR "BLIS (serial)")
    else()
      set(BLFFT_BLAS_VENDOR "OpenBLAS (OpenMP flavour)")
    endif()
    unset(_blfft_blas_name)
    get_filename_component(BLFFT_BLAS_RUNTIME_DIR "${BLFFT_BLAS_FILE}" DIRECTORY)
  else()
    set(BLFFT_BLAS_FILE "")
    find_package(BLAS ${_blfft_req})
    if(TARGET BLAS::BLAS)
      add_library(blfft_deps::blas INTERFACE IMPORTED)
      set_target_properties(blfft_deps::blas PROPERTIES INTERFACE_LINK_LIBRARIES BLAS::BLAS)
      set(BLFFT_BLAS_VENDOR "FindBLAS: ${BLAS_LIBRARIES}")
    else()
      list(APPEND BLFFT_DEPS_MISSING
           "BLAS (pip install scipy-openblas32 into the .venv, or install libblis-serial-dev)")
    endif()
  endif()
endif()

unset(_blfft_req)
