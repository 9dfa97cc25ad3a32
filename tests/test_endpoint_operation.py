

def test_a_client_that_hangs_up_before_its_answer_is_no_traceback(action: TinyAction) -> None:
    def slow_answer(message: Any) -> Any:
        time.sleep(0.5)
        return 200, [("Content-Type", "application/json"), ("Content-Length", "2")], b"{}"

    action.reset(slow_answer)
    with LocalEndpoint("slow=" + action.address) as endpoint:
        for _ in range(3):
            connection = socket.create_connection(("127.0.0.1", endpoint.port), timeout=30)
            connection.sendall(b"GET " + web("slow").encode() + b" HTTP/1.1\r\n\r\n")
            # Close with a reset, before the answer: writing it then fails.
            connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            connection.close()
        endpoint.request("GET", web("slow"))
        output = endpoint.output()
    action.reset()
    assert "Traceback" not in output and "Broken pipe" not in output
