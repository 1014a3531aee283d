# cmake -P script behind the CTest test `cmake_consume`: install the just-built blfft into a
# fresh prefix, then configure, build and run tests/cmake_consume against that prefix. Any failed
# step fails the test.
#
# -D inputs: BLFFT_BINARY_DIR, CONSUMER_SOURCE_DIR, WORK_DIR, CONFIG, GENERATOR, CXX_COMPILER

foreach(var BLFFT_BINARY_DIR CONSUMER_SOURCE_DIR WORK_DIR GENERATOR)
  if(NOT ${var})
    message(FATAL_ERROR "run_consumer_test.cmake: -D${var}=... is required")
  endif()
endforeach()
if(NOT CONFIG)
  set(CONFIG Release)
endif()

set(prefix "${WORK_DIR}/prefix")
set(build "${WORK_DIR}/build")
file(REMOVE_RECURSE "${WORK_DIR}")
file(MAKE_DIRECTORY "${WORK_DIR}")

function(step name)
  message(STATUS "[cmake_consume] ${name}: ${ARGN}")
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "[cmake_consume] ${name} failed (${rc})")
  endif()
endfunction()

step(install "${CMAKE_COMMAND}" --install "${BLFFT_BINARY_DIR}" --prefix "${prefix}"
     --config "${CONFIG}")
set(compiler_arg "")
if(CXX_COMPILER)
  set(compiler_arg "-DCMAKE_CXX_COMPILER=${CXX_COMPILER}")
endif()
step(configure "${CMAKE_COMMAND}" -S "${CONSUMER_SOURCE_DIR}" -B "${build}" -G "${GENERATOR}"
     "-DCMAKE_PREFIX_PATH=${prefix}" "-DCMAKE_BUILD_TYPE=${CONFIG}" ${compiler_arg})
step(build "${CMAKE_COMMAND}" --build "${build}" --config "${CONFIG}")

# The executable's location depends on the generator (multi-config ones add a folder).
find_program(app NAMES app PATHS "${build}" "${build}/${CONFIG}" NO_DEFAULT_PATH NO_CACHE)
if(NOT app)
  message(FATAL_ERROR "[cmake_consume] built, but no executable 'app' under ${build}")
endif()
step(run "${app}")
