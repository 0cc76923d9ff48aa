# The shell of a terminal opened in `onvm lab` (File > New > Terminal), run by
# JupyterLab as: bash --rcfile THIS_FILE -i.  First what a login shell runs
# (the terminal has no login of its own, and the user's profile belongs there),
# then onvm's Python environment first on PATH: a profile resets PATH, and
# `onvm lab check`, `python` and `jupyter` must be the lab's own.
# onvm/face/lab.py sets ONVM_LAB_BIN to that environment's bin directory.
if [ -r /etc/profile ]; then . /etc/profile; fi
for f in "$HOME/.bash_profile" "$HOME/.bash_login" "$HOME/.profile"; do
    if [ -r "$f" ]; then . "$f"; break; fi
done
if [ -n "${ONVM_LAB_BIN:-}" ]; then
    export PATH="$ONVM_LAB_BIN:$PATH"
    hash -r
fi
