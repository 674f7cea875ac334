/* ctl.h: the operator commands of the `ukko` program (members, leave,
 * down): HTTP clients of a running node's management routes. Program-only:
 * not part of the ukko_node library. */
#ifndef UKKO_CTL_H
#define UKKO_CTL_H

/* Runs command ("members", "leave" or "down") against the node at base_url
 * ("http://127.0.0.1:8558"); operand is the member address for leave/down;
 * token_path (may be NULL) holds the bearer token for operations. Prints the
 * result on stdout, errors on stderr; returns the exit code (0, 1, 2). */
int ukko_ctl_run(const char *command, const char *operand, const char *base_url,
                 const char *token_path);

#endif
