/* STUB */
#include <stdio.h>
int main(void)
{
    fprintf(stderr, "hwkey: not implemented yet\n");
    return 1;
}
