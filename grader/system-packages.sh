#!/usr/bin/env bash
# make install, system side: the sandbox (bubblewrap, and libseccomp for its system-call
# filter) and a PDF printer for the written answers (Chromium). Installed with apt-get where
# that is possible (root on Debian/Ubuntu); elsewhere each missing one is reported in one
# line and the install goes on.
# Usage: system-packages.sh [bubblewrap] [seccomp] [chromium]   (no argument: all three)
set -u
wanted=("${@:-bubblewrap seccomp chromium}")
wanted=(${wanted[*]})
has_seccomp() {
  ldconfig -p 2>/dev/null | grep -q 'libseccomp\.so\.2'
}
has_browser() {
  command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 \
    || command -v google-chrome >/dev/null 2>&1
}
need=()
for package in "${wanted[@]}"; do
  case "$package" in
    bubblewrap) command -v bwrap >/dev/null 2>&1 || need+=(bubblewrap) ;;
    seccomp) has_seccomp || need+=(libseccomp2) ;;
    chromium) has_browser || need+=(chromium) ;;
    *) echo "system-packages.sh: unknown package $package"; exit 2 ;;
  esac
done
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "make install: installing ${need[*]} with apt-get (a minute or two)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq "${need[@]}" >/dev/null 2>&1 \
    || { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq "${need[@]}" >/dev/null 2>&1; } \
    || echo "make install: apt-get could not install ${need[*]}"
fi
for package in "${need[@]}"; do
  case "$package" in
    bubblewrap) command -v bwrap >/dev/null 2>&1 || echo "make install: bubblewrap (bwrap) is \
missing: the grader runs submissions only where nothing is secret (the student bundle) or with --insecure" ;;
    libseccomp2) has_seccomp || echo "make install: libseccomp2 is missing: no system-call \
filter (memfd_create, keyrings, ptrace stay open) and no container mode" ;;
    chromium) has_browser || echo "make install: Chromium is missing: make submit writes the \
written answers as HTML only (print them to PDF yourself)" ;;
  esac
done
exit 0
