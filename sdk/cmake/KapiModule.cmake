# KapiModule.cmake -- kapi_add_plugin() and kapi_add_function(): build a kapi
# module .so from sources against kapi::sdk (or the in-tree kapi_sdk), with
# hidden visibility so only the entry symbol is exported, no "lib" prefix,
# and (unless OUTPUT_DIRECTORY is given) into KAPI_MODULE_DIR when set.
#
#   kapi_add_plugin(rate-limit SOURCES rate_limit.c [LIBRARIES ...] [OUTPUT_DIRECTORY dir])
#   kapi_add_function(hello SOURCES hello.c)
include_guard(GLOBAL)

function(kapi_add_module name)
  cmake_parse_arguments(KM "" "OUTPUT_DIRECTORY" "SOURCES;LIBRARIES" ${ARGN})
  add_library(${name} MODULE ${KM_SOURCES})
  if(TARGET kapi::sdk)
    target_link_libraries(${name} PRIVATE kapi::sdk ${KM_LIBRARIES})
  else()
    target_link_libraries(${name} PRIVATE kapi_sdk ${KM_LIBRARIES})
  endif()
  set_target_properties(${name} PROPERTIES
    PREFIX ""
    C_VISIBILITY_PRESET hidden
    VISIBILITY_INLINES_HIDDEN ON)
  if(KM_OUTPUT_DIRECTORY)
    set_target_properties(${name} PROPERTIES LIBRARY_OUTPUT_DIRECTORY ${KM_OUTPUT_DIRECTORY})
  elseif(KAPI_MODULE_DIR)
    set_target_properties(${name} PROPERTIES LIBRARY_OUTPUT_DIRECTORY ${KAPI_MODULE_DIR})
  endif()
endfunction()

function(kapi_add_plugin name)
  kapi_add_module(${name} ${ARGN})
endfunction()

function(kapi_add_function name)
  kapi_add_module(${name} ${ARGN})
endfunction()
