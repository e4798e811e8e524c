/* ui.h - the status page of `etl serve`, embedded in the binary.
 *
 * core/ui/status.html is turned into a C file in the build folder at build
 * time (cmake/embed_file.cmake, wired in core/CMakeLists.txt) and compiled
 * into the core: the page is one self-contained HTML file (inline CSS and
 * JavaScript, no external request) served as-is at GET /, with
 * Content-Type: text/html; charset=utf-8. It talks to the admin API under
 * /api/ and asks for the admin token when the API answers 401. */
#ifndef ETL_UI_H
#define ETL_UI_H

#include <stddef.h>

/* The page's bytes, NUL-terminated; etl_ui_status_html_len excludes the NUL. */
extern const char etl_ui_status_html[];
extern const size_t etl_ui_status_html_len;

#endif
