# Every dependency comes from the distribution (Debian 12): pkg-config where
# the package ships a .pc file, find_path/find_library where it does not
# (libev, http-parser). scripts/install-deps.sh installs them.
find_package(PkgConfig REQUIRED)
pkg_check_modules(CURL REQUIRED IMPORTED_TARGET libcurl)
pkg_check_modules(CJSON REQUIRED IMPORTED_TARGET libcjson)
pkg_check_modules(RDKAFKA REQUIRED IMPORTED_TARGET rdkafka)
pkg_check_modules(OPENSSL REQUIRED IMPORTED_TARGET openssl)
find_package(Threads REQUIRED)

function(ukko_find_lib name header lib pkg)
  find_path(${name}_INCLUDE_DIR ${header})
  find_library(${name}_LIBRARY ${lib})
  if(NOT ${name}_INCLUDE_DIR OR NOT ${name}_LIBRARY)
    message(FATAL_ERROR "${header} / lib${lib} not found: install the Debian package "
                        "${pkg} (scripts/install-deps.sh does)")
  endif()
  add_library(ukko::${lib} INTERFACE IMPORTED GLOBAL)
  target_include_directories(ukko::${lib} SYSTEM INTERFACE ${${name}_INCLUDE_DIR})
  target_link_libraries(ukko::${lib} INTERFACE ${${name}_LIBRARY})
endfunction()

ukko_find_lib(EV ev.h ev libev-dev)
ukko_find_lib(HTTP_PARSER http_parser.h http_parser libhttp-parser-dev)

if(UKKO_TESTS)
  pkg_check_modules(CRITERION REQUIRED IMPORTED_TARGET criterion)
endif()
