# balance.cmake -- unit tests of the upstream target choice and its inputs:
# balance.c, breaker.c and health.c (include()d by tests/unit/CMakeLists.txt,
# which defines kapi_unit_test and ${C}). balance.c needs libm for log().
kapi_unit_test(test_balance SOURCES ${C}/balance.c LIBRARIES m Threads::Threads)
kapi_unit_test(test_breaker SOURCES ${C}/breaker.c LIBRARIES Threads::Threads)
kapi_unit_test(test_health SOURCES ${C}/health.c LIBRARIES Threads::Threads)
