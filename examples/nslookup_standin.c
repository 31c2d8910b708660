/* An offline STAND-IN for nslookup, used by subprocess_call and subprocess_communicate.
 *
 * The tutorial runs the real nslookup against the network, which these examples cannot
 * rely on (CI machines have none). This program answers the tutorial's two queries with
 * the tutorial's own canned output and says so on stderr; it resolves nothing.
 *   nslookup_standin www.python.org      the answer of `nslookup www.python.org`
 *   nslookup_standin                     interactive: reads commands from stdin
 *                                        ("set q=mx", a name, "exit") */
#include <stdio.h>
#include <string.h>

static void server(void) { printf("Server:\t\t192.168.19.4\nAddress:\t192.168.19.4#53\n\n"); }

static void answer(const char *name, const char *type) {
  if (strcmp(type, "mx") == 0 && strcmp(name, "python.org") == 0) {
    server();
    printf("Non-authoritative answer:\npython.org\tmail exchanger = 50 mail.python.org.\n\n"
           "Authoritative answers can be found from:\n"
           "mail.python.org\tinternet address = 82.94.164.166\n"
           "mail.python.org\thas AAAA address 2001:888:2000:d::a6\n\n");
  } else if (strcmp(type, "a") == 0 && strcmp(name, "www.python.org") == 0) {
    server();
    printf("Non-authoritative answer:\nwww.python.org\tcanonical name = python.map.fastly.net.\n"
           "Name:\tpython.map.fastly.net\nAddress: 199.27.79.223\n\n");
  } else {
    server();
    printf("** server can't find %s: NXDOMAIN (the stand-in knows only the tutorial's "
           "names)\n\n",
           name);
  }
}

int main(int argc, char **argv) {
  fprintf(stderr, "[nslookup stand-in: offline, canned answers from the tutorial]\n");
  if (argc > 1) {
    answer(argv[1], "a");
    return 0;
  }
  char line[256], type[16] = "a";
  while (fgets(line, sizeof line, stdin) != NULL) {
    line[strcspn(line, "\r\n")] = '\0';
    if (strcmp(line, "exit") == 0)
      break;
    if (strncmp(line, "set q=", 6) == 0 || strncmp(line, "set type=", 9) == 0)
      snprintf(type, sizeof type, "%s", strchr(line, '=') + 1);
    else if (line[0] != '\0')
      answer(line, type);
  }
  return 0;
}
