# Sourced by tools/dist_{search,train,test}.sh: `. dist_usage.sh N "$@"`.
# With -h / --help, prints the calling script's header comment (its usage)
# and exits 0; with fewer than N arguments, prints it to stderr and exits 2;
# otherwise returns, and the script launches torchrun.
_dist_usage() {
    sed -n '2,/^[^#]/s/^# \{0,1\}//p' "$0"
}
_dist_needed=$1
shift
case "${1:-}" in
    -h|--help) _dist_usage; exit 0 ;;
esac
if [ "$#" -lt "$_dist_needed" ]; then
    echo "error: $(basename "$0") needs $_dist_needed arguments, got $#." >&2
    _dist_usage >&2
    exit 2
fi
