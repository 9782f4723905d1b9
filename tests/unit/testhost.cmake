# testhost.cmake -- unit tests that go through libkapi_test, the SDK's fake
# host (include()d by tests/unit/CMakeLists.txt): test_testhost (the fake
# host itself, plus three modules it must refuse to load), test_functions (the
# real hello.so and echo.so) and test_request_headers (the real plugin).
# They link kapi_test like a plugin author's tests would, not core sources.
set(KAPI_TESTHOST_MODULE_DIR ${CMAKE_CURRENT_BINARY_DIR}/testhost_modules)

kapi_add_plugin(testhost_abi2 SOURCES testhost_badmod.c
  OUTPUT_DIRECTORY ${KAPI_TESTHOST_MODULE_DIR})
kapi_add_plugin(testhost_noentry SOURCES testhost_badmod.c
  OUTPUT_DIRECTORY ${KAPI_TESTHOST_MODULE_DIR})
target_compile_definitions(testhost_noentry PRIVATE TESTHOST_NO_ENTRY)
kapi_add_plugin(testhost_minor SOURCES testhost_badmod.c
  OUTPUT_DIRECTORY ${KAPI_TESTHOST_MODULE_DIR})
target_compile_definitions(testhost_minor PRIVATE TESTHOST_MINOR)

# kapi_testhost_test(name [LIBRARIES ...] [MODULES target...])
function(kapi_testhost_test name)
  cmake_parse_arguments(KT "" "" "LIBRARIES;MODULES" ${ARGN})
  add_executable(${name} ${name}.c)
  target_link_libraries(${name} PRIVATE kapi_test PkgConfig::CMOCKA ${KT_LIBRARIES})
  if(KT_MODULES)
    add_dependencies(${name} ${KT_MODULES})
  endif()
  add_test(NAME unit.${name} COMMAND ${name})
  set_tests_properties(unit.${name} PROPERTIES
    ENVIRONMENT "KAPI_MODULE_DIR=${KAPI_MODULE_DIR};KAPI_TESTHOST_MODULE_DIR=${KAPI_TESTHOST_MODULE_DIR};KAPI_TEST_MODULE_DIR=${CMAKE_BINARY_DIR}/tests/modules"
    TIMEOUT 60)
endfunction()

kapi_testhost_test(test_testhost LIBRARIES Threads::Threads
  MODULES testhost_abi2 testhost_minor testhost_noentry kapi_test_modules)
kapi_testhost_test(test_functions LIBRARIES PkgConfig::JANSSON MODULES hello echo counter)
kapi_testhost_test(test_request_headers MODULES request-headers)
