"""The process exit codes of `fer-edge` (also in the README and `systemd/fer-edge.service`).

    0  clean stop (SIGTERM/SIGINT) or the end of a file source
    1  unexpected internal error
    2  configuration or model error (bad key or value, corrupt or missing model, detector file, TLS files,
       LED pins that cannot be used); systemd does not restart (`RestartPreventExitStatus=2`)
    3  frame source or input error: cannot be opened, unreadable image, or no frame for
       `source.frame_timeout_s` (systemd restarts)
"""

EXIT_OK, EXIT_ERROR, EXIT_CONFIG, EXIT_SOURCE = 0, 1, 2, 3
