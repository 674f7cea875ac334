#!/usr/bin/env python3
"""Writes orders as kcat -K'\t' lines ("c<customer>\t{"order_id","amount"}") to
stdout at a steady rate, for the streams tests that fault nodes while records
flow: produce_orders.py COUNT RATE_PER_S FIRST_ID [CUSTOMERS]."""
import sys
import time


def main():
    count, rate, first = int(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
    customers = int(sys.argv[4]) if len(sys.argv) > 4 else 500
    t0 = time.monotonic()
    out = sys.stdout
    for i in range(count):
        n = first + i
        out.write('c%d\t{"order_id":"o%d","amount":%d.%02d}\n'
                  % ((n * 7919) % customers, n, 1 + n % 90, n % 100))
        if i % 50 == 49:
            out.flush()
            ahead = t0 + (i + 1) / rate - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)
    out.flush()


if __name__ == "__main__":
    main()
