# Finds what libblfft links against and creates the imported targets it links to:
#   PkgConfig::FFTW3F, PkgConfig::FFTW3   FFTW3, single and double precision (pkg-config)
#   OpenMP::OpenMP_CXX                    OpenMP
#   blfft_deps::blas                      a Fortran BLAS (sgemm_/dgemm_): BLIS serial, else
#                                         OpenBLAS's OpenMP flavour, else FindBLAS
#
# Used twice, so that both places agree: by the top-level CMakeLists.txt, and by an installed
# blfftConfig.cmake of a *static* libblfft, whose consumers must link these too (a shared libblfft
# carries its dependencies itself).
#
# In:  BLFFT_DEPS_REQUIRED  true: fail the configure on anything missing (the build);
#                           false: set BLFFT_DEPS_MISSING instead (the installed config).
# Out: BLFFT_DEPS_MISSING   what was not found (empty when all is there)
#      BLFFT_BLAS_LIBRARY   the BLAS library file when found directly (cache)
#      BLFFT_BLAS_VENDOR    a word for the summary: "BLIS (serial)", "OpenBLAS (OpenMP
#                           flavour)", "FindBLAS: ..."
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
# thread, and be safe to call from several threads at once. First choice: BLIS, serial build
# (Debian libblis-serial-dev): single-threaded by construction, and on the CPUs its kernels know
# faster than OpenBLAS on our small, skinny products (bench/NOTES.md; the BLAS to prefer depends
# on which one knows the CPU: README, "These numbers need a BLAS that knows the CPU").
# Fallback: OpenBLAS, OpenMP build: one thread inside an active parallel region, and
# src/blas.cpp holds the calls made outside one to the calling thread (the pthread build,
# Debian's default libopenblas.so.0, would start its own threads inside ours; Debian's serial
# build is not thread-safe: wrong products from 16 threads at once). Both live in folders of
# their own that the loader does not search, hence BLFFT_BLAS_RUNTIME_DIR and the RUNPATHs set
# from it. Last resort: whatever FindBLAS finds.
set(BLFFT_BLAS_RUNTIME_DIR "")
if(NOT TARGET blfft_deps::blas)
  if(CMAKE_LIBRARY_ARCHITECTURE AND NOT BLFFT_BLAS_LIBRARY)
    find_library(BLFFT_BLAS_LIBRARY NAMES blis
                 PATHS /usr/lib/${CMAKE_LIBRARY_ARCHITECTURE}/blis-serial NO_DEFAULT_PATH
                 DOC "BLAS library (BLIS serial, or OpenBLAS OpenMP) that provides sgemm_/dgemm_")
    find_library(BLFFT_BLAS_LIBRARY NAMES openblas
                 PATHS /usr/lib/${CMAKE_LIBRARY_ARCHITECTURE}/openblas-openmp NO_DEFAULT_PATH)
  endif()
  if(BLFFT_BLAS_LIBRARY)
    add_library(blfft_deps::blas INTERFACE IMPORTED)
    set_target_properties(blfft_deps::blas PROPERTIES
                          INTERFACE_LINK_LIBRARIES "${BLFFT_BLAS_LIBRARY}")
    if(BLFFT_BLAS_LIBRARY MATCHES "blis")
      set(BLFFT_BLAS_VENDOR "BLIS (serial)")
    else()
      set(BLFFT_BLAS_VENDOR "OpenBLAS (OpenMP flavour)")
    endif()
  else()
    find_package(BLAS ${_blfft_req})
    if(TARGET BLAS::BLAS)
      add_library(blfft_deps::blas INTERFACE IMPORTED)
      set_target_properties(blfft_deps::blas PROPERTIES INTERFACE_LINK_LIBRARIES BLAS::BLAS)
      set(BLFFT_BLAS_VENDOR "FindBLAS: ${BLAS_LIBRARIES}")
    else()
      list(APPEND BLFFT_DEPS_MISSING "BLAS (install libblis-serial-dev)")
    endif()
  endif()
endif()
if(BLFFT_BLAS_LIBRARY)
  get_filename_component(BLFFT_BLAS_RUNTIME_DIR "${BLFFT_BLAS_LIBRARY}" DIRECTORY)
endif()

unset(_blfft_req)
