/* main.c - the etl command line. */
#include <stdio.h>
#include <string.h>

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "--version") == 0) {
        printf("etl %s\n", "0.1.0");
        return 0;
    }
    fprintf(stderr, "usage: etl COMMAND [ARGS]\n");
    return 2;
}
