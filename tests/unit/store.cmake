# store.cmake -- test_store, the unit test of core/store.c against a real
# LMDB environment in temporary directories (include()d by
# tests/unit/CMakeLists.txt).
kapi_unit_test(test_store SOURCES ${C}/store.c ${C}/arena.c ${C}/request.c ${C}/log.c
  LIBRARIES PkgConfig::LMDB Threads::Threads)
