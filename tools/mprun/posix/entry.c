/* The entry point on POSIX: the arguments are bytes already, passed on as they are. */
#include "../mprun.h"

int main(int argc, char **argv) { return mprun_main(argc, argv); }
