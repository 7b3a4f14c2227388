"""The RDP smart-card redirection lab: PC/SC call accounting, the redirection model and the chart.

Under smart-card redirection over RDP (MS-RDPESC) every PC/SC call the server-side
CSP makes is one request/response on the RDP channel to the client, so the unit of
cost is the SCard call, not the APDU. docs/rdp.md describes the pieces:

- `interposer`: a C library that sits in front of libpcsclite, logs every SCard call of
  an unmodified client (JSON lines) and optionally delays each by an RTT.
- `calllog`: reading those logs (and the host stack's `CallMeter`) as workloads.
- `model`: the time of a workload over a link of given RTT and bandwidth.
- `flows`: the minidriver sign-in flows (Base CSP cold and warm, the naive CSP).
- `chart`: sign-in time against RTT for every flow.
"""
