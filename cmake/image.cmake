# Image codecs for ImageDecoder (src/runtime/host_image.c), from Debian's
# libjpeg62-turbo-dev, libpng-dev, libtiff-dev, libwebp-dev and libopenjp2-7-dev.
# Each is optional: a format whose library is missing is refused at run time with
# a message naming it (BMP and PNM need no library). Include this file after the
# flagos and flagos_static targets are defined.
find_package(JPEG)
find_package(PNG)
find_package(TIFF)
pkg_check_modules(WEBP IMPORTED_TARGET libwebp)
pkg_check_modules(OPENJP2 IMPORTED_TARGET libopenjp2)

set(FLAGOS_IMAGE_DEFS)
set(FLAGOS_IMAGE_LIBS)
if(JPEG_FOUND)
  list(APPEND FLAGOS_IMAGE_DEFS FLAGOS_HAVE_JPEG)
  list(APPEND FLAGOS_IMAGE_LIBS JPEG::JPEG)
endif()
if(PNG_FOUND)
  list(APPEND FLAGOS_IMAGE_DEFS FLAGOS_HAVE_PNG)
  list(APPEND FLAGOS_IMAGE_LIBS PNG::PNG)
endif()
if(TIFF_FOUND)
  list(APPEND FLAGOS_IMAGE_DEFS FLAGOS_HAVE_TIFF)
  list(APPEND FLAGOS_IMAGE_LIBS TIFF::TIFF)
endif()
if(WEBP_FOUND)
  list(APPEND FLAGOS_IMAGE_DEFS FLAGOS_HAVE_WEBP)
  list(APPEND FLAGOS_IMAGE_LIBS PkgConfig::WEBP)
endif()
if(OPENJP2_FOUND)
  list(APPEND FLAGOS_IMAGE_DEFS FLAGOS_HAVE_OPENJP2)
  list(APPEND FLAGOS_IMAGE_LIBS PkgConfig::OPENJP2)
endif()
message(STATUS "ImageDecoder codecs: ${FLAGOS_IMAGE_DEFS}")

# The runtime's objects need the headers; the libraries built from them need the libraries.
target_compile_definitions(flagos_runtime PRIVATE ${FLAGOS_IMAGE_DEFS})
target_link_libraries(flagos_runtime PUBLIC ${FLAGOS_IMAGE_LIBS})
target_link_libraries(flagos PRIVATE ${FLAGOS_IMAGE_LIBS})
target_link_libraries(flagos_static PUBLIC ${FLAGOS_IMAGE_LIBS})
