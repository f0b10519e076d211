"""The sample messages the capability checks append: a two-part message whose first part URL-PARTIAL slices."""

SAMPLE = (b"From: Lemonade Conformance <alice@example.test>\r\n"
          b"To: bob@example.test\r\n"
          b"Subject: lemonade sample\r\n"
          b"MIME-Version: 1.0\r\n"
          b"Content-Type: multipart/mixed; boundary=\"lemon-boundary\"\r\n"
          b"\r\n"
          b"--lemon-boundary\r\n"
          b"Content-Type: text/plain; charset=us-ascii\r\n"
          b"\r\n"
          b"Hello partial world 0123456789\r\n"
          b"--lemon-boundary--\r\n")
SAMPLE_PART1 = b"Hello partial world 0123456789"
