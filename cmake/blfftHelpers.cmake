# Small helpers shared by the library, the examples and the tests.

# blfft_target_warnings(<target>): the project's warning flags on one of our own targets.
function(blfft_target_warnings target)
  if(CMAKE_CXX_COMPILER_ID MATCHES "GNU|Clang")
    target_compile_options(${target} PRIVATE -Wall -Wextra)
  elseif(MSVC)
    target_compile_options(${target} PRIVATE /W4)
  endif()
endfunction()

# blfft_target_tuning(<target>): optimisation flags for our hot code. CMake's Release flags for
# GCC/Clang are already -O3; say so explicitly so that a toolchain file with other defaults does
# not silently lose it. BLFFT_NATIVE adds -march=native (not portable: the binary may not run on
# another CPU, so it is off by default and never used for wheels).
function(blfft_target_tuning target)
  if(CMAKE_CXX_COMPILER_ID MATCHES "GNU|Clang")
    target_compile_options(${target} PRIVATE $<$<CONFIG:Release>:-O3>)
    if(BLFFT_NATIVE)
      target_compile_options(${target} PRIVATE -march=native)
    endif()
  endif()
endfunction()

# blfft_library_target(<target> <export name>): what every blfft library sets: C++17 without
# extensions, hidden symbols (BLFFT_API marks the exported ones; BLFFT_BUILDING_LIBRARY makes it
# export rather than import), the version, and the public headers in the build and install trees.
function(blfft_library_target target export_name)
  target_compile_features(${target} PUBLIC cxx_std_17)
  set_target_properties(${target} PROPERTIES
                        CXX_EXTENSIONS OFF
                        CXX_VISIBILITY_PRESET hidden
                        VISIBILITY_INLINES_HIDDEN ON
                        VERSION ${PROJECT_VERSION}
                        SOVERSION ${PROJECT_VERSION_MAJOR}
                        EXPORT_NAME ${export_name})
  target_compile_definitions(${target} PRIVATE BLFFT_BUILDING_LIBRARY)
  target_include_directories(${target} PUBLIC $<BUILD_INTERFACE:${PROJECT_SOURCE_DIR}/include>
                                              $<INSTALL_INTERFACE:${CMAKE_INSTALL_INCLUDEDIR}>)
endfunction()
