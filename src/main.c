/* main.c — placeholder until serve lands. */
int main(void)
{
    return 0;
}
