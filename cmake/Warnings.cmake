# The house warnings (STYLE.md, Build); -Werror when UKKO_WERROR is on (CI).
function(ukko_warnings target)
  target_compile_options(${target} PRIVATE
    -Wall -Wextra -Wshadow -Wformat=2 -Wstrict-prototypes -Wmissing-prototypes -Wvla
    $<$<BOOL:${UKKO_WERROR}>:-Werror>)
endfunction()
