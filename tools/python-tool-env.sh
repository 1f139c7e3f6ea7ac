# Sourced by the scripts that test Python against the real probelog-tool (tools/test-python.sh,
# tools/test-python-package.sh), from the repository root: sets up .venv-py and libtorch (no-ops
# when they are there), builds probelog-tool with the `torch` feature, and exports its path as
# PROBELOG_TOOL; `target` is the absolute cargo target directory.
# PROBELOG_TOOL_PROFILE=debug reuses the debug build that tools/test.sh has already made.
./tools/setup-python.sh
./tools/setup-libtorch.sh
profile=${PROBELOG_TOOL_PROFILE:-release}
if [[ $profile == release ]]; then
    cargo build --release -p probelog-tool --features torch --locked
else
    cargo build -p probelog-tool --features torch --locked
fi
target=${CARGO_TARGET_DIR:-target}
[[ $target = /* ]] || target=$PWD/$target
export PROBELOG_TOOL=$target/$profile/probelog-tool
