/* A shared library without the dmlbench entry symbol: the host must report and skip it. */
int unrelated_function(int x) { return x + 1; }
