# The layers of gpu-sweep, bottom to top, and the check that keeps them (ctest: layers).
#
#   cmake -DROOT=<source dir> -P cmake/layers.cmake
#
# A file belongs to the layer whose folder holds it. It may include a file of its own layer or
# of a layer below, never one above, except the interface/factory pairs of
# GPUSWEEP_LAYER_EXCEPTIONS. Every C++ and CUDA file under src/, include/, kernels/, python/
# and cuda_emu/ must lie in a layer's folder, and every quoted #include must name a file of the
# project (or a generated header). Each offending include is one line: file:line: what is wrong.

# name, then its folders.
set(GPUSWEEP_LAYERS
  "cuda_emu  cuda_emu/"                                      # the emulated CUDA runtime and libraries
  "util      include/gpusweep/util/ src/util/"               # text, CSV, digests, small helpers
  "model     include/gpusweep/model/ src/model/"             # one network's math, datasets, batches, model names
  "solver    include/gpusweep/solver/ src/solver/"           # LAPACK solves of one network, baselines
  "backend   include/gpusweep/backend/ src/backend/"         # the Backend interface and factory, the CPU backend, spectra
  "kernels   kernels/"                                       # the CUDA backend
  "train     include/gpusweep/train/ src/train/"             # the Newton driver, the sweep
  "analysis  include/gpusweep/analysis/ src/analysis/"       # slope fits, the NTK experiment
  "io        include/gpusweep/io/ src/io/"                   # results files, checkpoints, saved parameters
  "figures   include/gpusweep/figures/ src/figures/"         # gnuplot figures
  "cli       src/cli/ python/")                              # the command line and the Python module

# "includer -> included": the includes allowed to run up. The CUDA plugin's table (its
# interface) lies with the CUDA backend; the loader that finds it for Backend::create and
# ntk_spectra (its factory) lies with the backend.
set(GPUSWEEP_LAYER_EXCEPTIONS
  "src/backend/cuda_loader.h -> kernels/cuda_plugin.h")

# Headers that the build generates (not in the source tree).
set(GPUSWEEP_GENERATED_HEADERS gpusweep_version.h)

# Where quoted includes are looked for after the including file's own folder, in the order of
# the build's include paths.
set(GPUSWEEP_INCLUDE_ROOTS include src kernels cuda_emu/include)

# ---- the check ------------------------------------------------------------------------------

if(NOT CMAKE_SCRIPT_MODE_FILE)
  return()  # included for the table alone
endif()
cmake_policy(VERSION 3.24)
if(NOT ROOT)
  get_filename_component(ROOT "${CMAKE_CURRENT_LIST_DIR}/.." ABSOLUTE)
endif()

set(order "")
set(layer_names "")
set(layer_dirs "")  # "dir|index" pairs
set(index 0)
foreach(entry IN LISTS GPUSWEEP_LAYERS)
  string(REGEX REPLACE "[ \t]+" ";" parts "${entry}")
  list(POP_FRONT parts name)
  list(APPEND layer_names ${name})
  foreach(dir IN LISTS parts)
    if(NOT IS_DIRECTORY "${ROOT}/${dir}")
      message(FATAL_ERROR "cmake/layers.cmake: layer ${name}: no folder ${dir}")
    endif()
    list(APPEND layer_dirs "${dir}|${index}")
  endforeach()
  string(APPEND order "${name} < ")
  math(EXPR index "${index} + 1")
endforeach()
string(REGEX REPLACE " < $" "" order "${order}")

# The layer index of a path relative to ROOT (longest folder first), or -1.
function(layer_of path out)
  set(best -1)
  set(best_len 0)
  foreach(pair IN LISTS layer_dirs)
    string(REPLACE "|" ";" pair "${pair}")
    list(GET pair 0 dir)
    list(GET pair 1 idx)
    string(LENGTH "${dir}" len)
    string(SUBSTRING "${path}" 0 ${len} head)
    if(head STREQUAL dir AND len GREATER best_len)
      set(best ${idx})
      set(best_len ${len})
    endif()
  endforeach()
  set(${out} ${best} PARENT_SCOPE)
endfunction()

set(sources "")
foreach(top src include kernels python cuda_emu)
  file(GLOB_RECURSE found RELATIVE "${ROOT}" "${ROOT}/${top}/*")
  list(APPEND sources ${found})
endforeach()
list(FILTER sources INCLUDE REGEX "\\.(h|hpp|cpp|cc|cu|cuh)$")
list(SORT sources)

set(problems 0)
set(used_exceptions "")
foreach(file IN LISTS sources)
  layer_of("${file}" from)
  if(from EQUAL -1)
    message("${file}:1: lies in no layer's folder (cmake/layers.cmake)")
    math(EXPR problems "${problems} + 1")
    continue()
  endif()
  list(GET layer_names ${from} from_name)
  get_filename_component(dir "${file}" DIRECTORY)
  file(READ "${ROOT}/${file}" text)
  # One list entry per line: the characters that CMake lists treat specially go first.
  string(REPLACE ";" "," text "${text}")
  string(REPLACE "[" "(" text "${text}")
  string(REPLACE "]" ")" text "${text}")
  string(REPLACE "\n" ";" lines "${text}")
  set(line_no 0)
  foreach(line IN LISTS lines)
    math(EXPR line_no "${line_no} + 1")
    if(NOT line MATCHES "^[ \t]*#[ \t]*include[ \t]*([\"<])([^\">]+)[\">]")
      continue()
    endif()
    set(quoted OFF)
    if(CMAKE_MATCH_1 STREQUAL "\"")
      set(quoted ON)
    endif()
    set(name "${CMAKE_MATCH_2}")
    # The compiler's order: the including file's folder (quoted only), then the roots.
    set(target "")
    if(quoted AND EXISTS "${ROOT}/${dir}/${name}" AND NOT IS_DIRECTORY "${ROOT}/${dir}/${name}")
      file(RELATIVE_PATH target "${ROOT}" "${ROOT}/${dir}/${name}")
    else()
      set(hits "")
      foreach(root IN LISTS GPUSWEEP_INCLUDE_ROOTS)
        if(EXISTS "${ROOT}/${root}/${name}" AND NOT IS_DIRECTORY "${ROOT}/${root}/${name}")
          list(APPEND hits "${root}/${name}")
        endif()
      endforeach()
      list(LENGTH hits nhits)
      if(nhits GREATER 1)
        string(REPLACE ";" ", " hits "${hits}")
        message("${file}:${line_no}: \"${name}\" names several files (${hits}); spell out its folder")
        math(EXPR problems "${problems} + 1")
        continue()
      elseif(nhits EQUAL 1)
        set(target "${hits}")
      endif()
    endif()
    if(target STREQUAL "")
      if(quoted AND NOT name IN_LIST GPUSWEEP_GENERATED_HEADERS)
        message("${file}:${line_no}: \"${name}\" is no file of the project")
        math(EXPR problems "${problems} + 1")
      endif()
      continue()  # a system or library header
    endif()
    layer_of("${target}" to)
    if(to EQUAL -1)
      message("${file}:${line_no}: includes ${target}, which lies in no layer's folder (cmake/layers.cmake)")
      math(EXPR problems "${problems} + 1")
    elseif(to GREATER from)
      if("${file} -> ${target}" IN_LIST GPUSWEEP_LAYER_EXCEPTIONS)
        list(APPEND used_exceptions "${file} -> ${target}")
      else()
        list(GET layer_names ${to} to_name)
        message("${file}:${line_no}: includes ${target}: ${from_name} may not include ${to_name}, a higher layer")
        math(EXPR problems "${problems} + 1")
      endif()
    endif()
  endforeach()
endforeach()

# An exception that no include uses any more goes from the list.
foreach(pair IN LISTS GPUSWEEP_LAYER_EXCEPTIONS)
  if(NOT pair IN_LIST used_exceptions)
    message("cmake/layers.cmake:1: the exception \"${pair}\" matches no upward include; remove it")
    math(EXPR problems "${problems} + 1")
  endif()
endforeach()

list(LENGTH sources nsources)
if(problems GREATER 0)
  message(FATAL_ERROR "layers: ${problems} problem(s) in ${nsources} files (layers: ${order})")
endif()
message("layers: ${nsources} files, every include runs down the layers (${order})")
