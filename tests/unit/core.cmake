# core.cmake -- unit tests for core files that had none of their own
# (arena, jsonw, problem, request, generation); included from
# tests/unit/CMakeLists.txt, which defines kapi_unit_test and ${C}.
kapi_unit_test(test_arena SOURCES ${C}/arena.c)
kapi_unit_test(test_jsonw SOURCES ${C}/jsonw.c LIBRARIES PkgConfig::JANSSON)
kapi_unit_test(test_problem SOURCES ${C}/problem.c ${C}/request.c ${C}/arena.c ${C}/jsonw.c
  LIBRARIES PkgConfig::JANSSON)
kapi_unit_test(test_request SOURCES ${C}/request.c ${C}/arena.c)
kapi_unit_test(test_generation SOURCES ${C}/generation.c ${C}/config.c ${C}/config_upstream.c
  ${C}/jsonpos.c ${C}/router.c ${C}/path.c ${C}/module.c ${C}/request.c ${C}/arena.c ${C}/chain.c
  ${C}/problem.c ${C}/jsonw.c ${C}/log.c ${KAPI_UPSTREAM_SOURCES}
  LIBRARIES PkgConfig::JANSSON PkgConfig::CURL http_parser m ${CMAKE_DL_LIBS} Threads::Threads)
add_dependencies(test_generation kapi_test_modules)
