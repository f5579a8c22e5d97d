"""Faults on purpose (issue 7): kill -9 mid-purchase and mid-call, load and memory, protocol
abuse and resumption, fuzzing the API, hostile content in the browser.

Real processes almost everywhere here: the crash, the load or the transport is the point.
The load and memory tests share one xdist group so they never measure each other.
"""
