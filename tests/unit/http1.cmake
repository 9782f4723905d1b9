# http1.cmake -- test_http1, the unit test of core/http1.c against Debian's
# libhttp-parser (include()d by tests/unit/CMakeLists.txt).
kapi_unit_test(test_http1 SOURCES ${C}/http1.c LIBRARIES http_parser)
